//! A small subset of Go's text/template, enough for Docker's `--format`: literal text,
//! `{{.Field.Sub}}`, `{{json .Field}}`, `{{index .Map "key"}}`, `{{upper …}}`/`{{lower …}}`
//! and a leading `table` that prints a header row.

use anyhow::{Result, bail};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Action {
        func: Option<String>,
        path: Vec<String>,
        key: Option<String>,
    },
}

/// A parsed template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
    /// `table …`: print a header with the field names.
    pub table: bool,
}

fn unquote_escapes(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

impl Template {
    pub(crate) fn parse(src: &str) -> Result<Template> {
        let (table, src) = match src.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, src),
        };
        let mut pieces = Vec::new();
        let mut rest = src;
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                pieces.push(Piece::Text(unquote_escapes(&rest[..i])));
            }
            let Some(j) = rest[i..].find("}}") else {
                bail!("template: unclosed action in `{src}`");
            };
            let inner = rest[i + 2..i + j].trim();
            pieces.push(parse_action(inner)?);
            rest = &rest[i + j + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(unquote_escapes(rest)));
        }
        Ok(Template { pieces, table })
    }

    /// The header row of a `table` template: each field's last path element, upper case.
    pub(crate) fn header(&self) -> String {
        self.header_with(&[])
    }

    /// The header row, where `rename` gives some fields the column name of the listing
    /// at hand (`volume ls` shows `Name` as `VOLUME NAME`).
    pub(crate) fn header_with(&self, rename: &[(&str, &str)]) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Action { path, .. } => {
                    let field = path.last().map_or("", |s| s);
                    match rename.iter().find(|(f, _)| *f == field) {
                        Some((_, h)) => h.to_string(),
                        None => header_name(field),
                    }
                }
            })
            .collect()
    }

    pub(crate) fn render(&self, v: &Value) -> Result<String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Action { func, path, key } => {
                    let mut cur = v;
                    for f in path {
                        cur = cur.get(f).unwrap_or(&Value::Null);
                    }
                    if let Some(k) = key {
                        cur = cur.get(k).unwrap_or(&Value::Null);
                    }
                    let s = match func.as_deref() {
                        Some("json") => serde_json::to_string(cur)?,
                        Some("upper") => go_string(cur).to_uppercase(),
                        Some("lower") => go_string(cur).to_lowercase(),
                        _ => go_string(cur),
                    };
                    out.push_str(&s);
                }
            }
        }
        Ok(out)
    }
}

fn header_name(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "Names" => "NAMES".into(),
        _ => field.to_uppercase(),
    }
}

fn parse_action(inner: &str) -> Result<Piece> {
    let words: Vec<&str> = inner.split_whitespace().collect();
    let (func, arg, key) = match words.as_slice() {
        [p] => (None, *p, None),
        [f @ ("json" | "upper" | "lower"), p] => (Some(f.to_string()), *p, None),
        [p, "|", f @ ("json" | "upper" | "lower")] => (Some(f.to_string()), *p, None),
        ["index", p, k] => (None, *p, Some(k.trim_matches('"').to_string())),
        _ => bail!("template: unsupported action `{{{{{inner}}}}}`"),
    };
    let Some(path) = arg.strip_prefix('.') else {
        bail!("template: `{arg}` is not a field path (write `.{arg}`)");
    };
    let path = path
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Ok(Piece::Action { func, path, key })
}

/// Go's `%v` of a JSON value.
fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_json_index_table() {
        let v = json!({"Id": "abc", "State": {"Pid": 42, "OOMKilled": false},
                       "Config": {"Env": ["A=1"], "Labels": {"x": "y"}}});
        let t = Template::parse("{{.Id}} {{ .State.Pid }} {{.State.OOMKilled}}").unwrap();
        assert_eq!(t.render(&v).unwrap(), "abc 42 false");
        let t = Template::parse("{{json .Config}}").unwrap();
        assert_eq!(
            t.render(&v).unwrap(),
            r#"{"Env":["A=1"],"Labels":{"x":"y"}}"#
        );
        let t = Template::parse(r#"{{index .Config.Labels "x"}}"#).unwrap();
        assert_eq!(t.render(&v).unwrap(), "y");
        let t = Template::parse("table {{.ID}}\\t{{.Names}}").unwrap();
        assert!(t.table);
        assert_eq!(t.header(), "CONTAINER ID\tNAMES");
        assert!(Template::parse("{{.Id").is_err());
        assert!(Template::parse("{{range .X}}").is_err());
        assert_eq!(go_string(&json!(["a", 1])), "[a 1]");
    }
}
