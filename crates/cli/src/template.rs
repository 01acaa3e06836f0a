//! A small subset of Go's text/template, enough for Docker's `--format`: literal text,
//! `{{.Field.Sub}}`, `{{json .Field}}`, `{{index .Map "key"}}`, `{{upper …}}`/`{{lower …}}`,
//! `{{range .List}}…{{end}}` over arrays and maps (keys in order, `.` the element; also
//! `{{range $v := …}}` and `{{range $k, $v := …}}` with `{{$v.Field}}`) and a leading
//! `table` that prints a header row.

use anyhow::{Result, bail};
use serde_json::Value;

/// What an action reads: `.` or `$var`, then field names.
#[derive(Debug, Clone, PartialEq)]
struct Arg {
    var: Option<String>,
    path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Action {
        func: Option<String>,
        arg: Arg,
        key: Option<String>,
    },
    Range {
        arg: Arg,
        key_var: Option<String>,
        value_var: Option<String>,
        body: Vec<Piece>,
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

/// Variables in scope while rendering: `.`, and `$name`s bound by `range`.
struct Scope<'a> {
    dot: &'a Value,
    vars: Vec<(String, Value)>,
}

impl Template {
    pub(crate) fn parse(src: &str) -> Result<Template> {
        let (table, src) = match src.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, src),
        };
        // Open `range`s, innermost last, each with the pieces collected so far outside it.
        let mut stack: Vec<(Piece, Vec<Piece>)> = Vec::new();
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
            rest = &rest[i + j + 2..];
            if inner == "end" {
                let Some((mut range, outer)) = stack.pop() else {
                    bail!("template: unexpected {{{{end}}}}");
                };
                if let Piece::Range { body, .. } = &mut range {
                    *body = std::mem::replace(&mut pieces, outer);
                }
                pieces.push(range);
            } else if let Some(r) = inner.strip_prefix("range ") {
                stack.push((parse_range(r.trim())?, std::mem::take(&mut pieces)));
            } else {
                pieces.push(parse_action(inner)?);
            }
        }
        if !stack.is_empty() {
            bail!("template: unexpected EOF (a {{{{range}}}} has no {{{{end}}}})");
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
                Piece::Action { arg, .. } => {
                    let field = arg.path.last().map_or("", |s| s);
                    match rename.iter().find(|(f, _)| *f == field) {
                        Some((_, h)) => h.to_string(),
                        None => header_name(field),
                    }
                }
                Piece::Range { .. } => String::new(),
            })
            .collect()
    }

    pub(crate) fn render(&self, v: &Value) -> Result<String> {
        let mut out = String::new();
        let mut scope = Scope {
            dot: v,
            vars: Vec::new(),
        };
        render_pieces(&self.pieces, &mut scope, &mut out)?;
        Ok(out)
    }
}

fn lookup<'a>(arg: &Arg, scope: &'a Scope<'_>) -> Result<&'a Value> {
    let mut cur = match &arg.var {
        None => scope.dot,
        Some(name) => match scope.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => v,
            None => bail!("template: undefined variable: ${name}"),
        },
    };
    for f in &arg.path {
        cur = cur.get(f).unwrap_or(&Value::Null);
    }
    Ok(cur)
}

fn render_pieces(pieces: &[Piece], scope: &mut Scope<'_>, out: &mut String) -> Result<()> {
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Action { func, arg, key } => {
                let mut cur = lookup(arg, scope)?;
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
            Piece::Range {
                arg,
                key_var,
                value_var,
                body,
            } => render_range(
                lookup(arg, scope)?.clone(),
                key_var,
                value_var,
                body,
                scope,
                out,
            )?,
        }
    }
    Ok(())
}

/// Go's `range`: arrays in order, maps by key, nothing for null.
fn render_range(
    over: Value,
    key_var: &Option<String>,
    value_var: &Option<String>,
    body: &[Piece],
    scope: &mut Scope<'_>,
    out: &mut String,
) -> Result<()> {
    let items: Vec<(Value, Value)> = match over {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i), v))
            .collect(),
        Value::Object(m) => {
            let mut v: Vec<(String, Value)> = m.into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v.into_iter().map(|(k, v)| (Value::String(k), v)).collect()
        }
        other => bail!("template: range can't iterate over {}", go_string(&other)),
    };
    for (k, v) in items {
        let depth = scope.vars.len();
        if let Some(name) = key_var {
            scope.vars.push((name.clone(), k));
        }
        if let Some(name) = value_var {
            scope.vars.push((name.clone(), v.clone()));
        }
        let mut inner = Scope {
            dot: &v,
            vars: std::mem::take(&mut scope.vars),
        };
        let r = render_pieces(body, &mut inner, out);
        scope.vars = inner.vars;
        scope.vars.truncate(depth);
        r?;
    }
    Ok(())
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

/// `.Field.Sub`, `.`, `$v` or `$v.Field`.
fn parse_arg(s: &str) -> Result<Arg> {
    let (var, path) = if let Some(v) = s.strip_prefix('$') {
        let (name, path) = v.split_once('.').unwrap_or((v, ""));
        (Some(name.to_string()), path)
    } else if let Some(path) = s.strip_prefix('.') {
        (None, path)
    } else {
        bail!("template: `{s}` is not a field path (write `.{s}`)");
    };
    let path = path
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Ok(Arg { var, path })
}

/// `range .X`, `range $v := .X` or `range $k, $v := .X`.
fn parse_range(s: &str) -> Result<Piece> {
    let var = |v: &str| -> Result<String> {
        match v.trim().strip_prefix('$') {
            Some(n) if !n.is_empty() => Ok(n.to_string()),
            _ => bail!("template: bad range variable `{v}`"),
        }
    };
    let (key_var, value_var, arg) = match s.split_once(":=") {
        None => (None, None, s),
        Some((vars, arg)) => match vars.split_once(',') {
            Some((k, v)) => (Some(var(k)?), Some(var(v)?), arg.trim()),
            None => (None, Some(var(vars)?), arg.trim()),
        },
    };
    Ok(Piece::Range {
        arg: parse_arg(arg)?,
        key_var,
        value_var,
        body: Vec::new(),
    })
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
    Ok(Piece::Action {
        func,
        arg: parse_arg(arg)?,
        key,
    })
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
        assert!(Template::parse("{{end}}").is_err());
        assert!(Template::parse("{{x}}").is_err());
        assert_eq!(go_string(&json!(["a", 1])), "[a 1]");
    }

    #[test]
    fn range_over_maps_and_lists() {
        let v = json!({"NetworkSettings": {"Networks": {
            "b": {"IPAddress": "10.0.0.3"}, "a": {"IPAddress": "10.0.0.2"}}},
            "Ports": {"80/tcp": [{"HostPort": "1"}, {"HostPort": "2"}], "53/udp": null},
            "Env": ["A=1", "B=2"], "N": 3});
        let r = |t: &str| Template::parse(t).unwrap().render(&v).unwrap();
        assert_eq!(
            r("{{range .NetworkSettings.Networks}}{{.IPAddress}};{{end}}"),
            "10.0.0.2;10.0.0.3;"
        );
        assert_eq!(r("{{range .Env}}[{{.}}]{{end}}"), "[A=1][B=2]");
        assert_eq!(
            r("{{range $p, $b := .Ports}}{{$p}}:{{range $b}}{{.HostPort}}{{end}} {{end}}"),
            "53/udp: 80/tcp:12 "
        );
        assert_eq!(r("{{range $e := .Env}}{{$e}},{{end}}{{.N}}"), "A=1,B=2,3");
        assert_eq!(r("{{range .Missing}}x{{end}}"), "");
        let bad = Template::parse("{{range .N}}x{{end}}").unwrap();
        assert!(bad.render(&v).is_err());
        let undefined = Template::parse("{{range .Env}}{{$x}}{{end}}").unwrap();
        assert!(undefined.render(&v).is_err());
    }
}
