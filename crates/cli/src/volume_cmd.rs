//! `berth volume create|ls|inspect|rm|prune`, with Docker's output: the `DRIVER  VOLUME
//! NAME` table, `--filter dangling=|name=|label=|driver=`, `--format` templates, inspect's
//! JSON array, "volume is in use" refusals and prune's "Total reclaimed space".

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use anyhow::{Result, bail};
use berth_engine::{Engine, Volume};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::Globals;
use crate::container_cmd::open_engine;
use crate::ps_fmt::print_table;
use crate::template::Template;

/// `berth volume …`.
#[derive(Debug, Subcommand)]
pub(crate) enum VolumeCommand {
    /// Create a volume.
    Create {
        /// Specify volume driver name (only local).
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Set metadata for a volume (key=value).
        #[arg(long)]
        label: Vec<String>,
        /// Set driver specific options (none are supported).
        #[arg(short, long)]
        opt: Vec<String>,
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only display volume names.
        #[arg(short, long)]
        quiet: bool,
        /// Provide filter values (dangling=true|false, name=, label=, driver=).
        #[arg(short, long)]
        filter: Vec<String>,
        /// Format output using a custom template.
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more volumes.
    Inspect {
        /// Format output using a custom template.
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more volumes.
    #[command(alias = "remove")]
    Rm {
        /// Force the removal of one or more volumes (a missing one is no error).
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused local volumes (anonymous ones only, unless --all).
    Prune {
        /// Remove all unused volumes, not just anonymous ones.
        #[arg(short, long)]
        all: bool,
        /// Provide filter values (label=, label!=).
        #[arg(long)]
        filter: Vec<String>,
        /// Do not prompt for confirmation.
        #[arg(short, long)]
        force: bool,
    },
}

pub(crate) fn run(g: &Globals, c: VolumeCommand) -> Result<()> {
    let mut e = open_engine(g)?;
    match c {
        VolumeCommand::Create {
            driver,
            label,
            opt,
            name,
        } => {
            if let Some(o) = opt.first() {
                bail!("volume option `{o}` is not supported by the local driver here");
            }
            let v = e.volume_create(name.as_deref(), &driver, &parse_labels(&label)?)?;
            println!("{}", v.name);
            Ok(())
        }
        VolumeCommand::Ls {
            quiet,
            filter,
            format,
        } => ls(&mut e, quiet, &filter, format.as_deref()),
        VolumeCommand::Inspect { format, names } => inspect(&mut e, format.as_deref(), &names),
        VolumeCommand::Rm { force, names } => {
            if let [one] = names.as_slice() {
                e.volume_remove(one, force)?;
                println!("{one}");
                return Ok(());
            }
            let mut failed = false;
            for n in &names {
                match e.volume_remove(n, force) {
                    Ok(()) => println!("{n}"),
                    Err(err) => {
                        eprintln!("berth: {err}");
                        failed = true;
                    }
                }
            }
            if failed {
                bail!("some volumes could not be removed");
            }
            Ok(())
        }
        VolumeCommand::Prune { all, filter, force } => prune(&mut e, all, &filter, force),
    }
}

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("invalid label `{l}`: use key=value");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// One `--filter key=value`, parsed.
#[derive(Debug, PartialEq)]
enum Filter {
    Dangling(bool),
    Name(String),
    Label {
        key: String,
        value: Option<String>,
        negate: bool,
    },
    Driver(String),
}

fn parse_filter(f: &str, allowed: &[&str]) -> Result<Filter> {
    let (k, v) = f.split_once('=').unwrap_or((f, ""));
    if !allowed.contains(&k) {
        bail!("invalid filter '{k}'");
    }
    let label = |negate| {
        let (key, value) = match v.split_once('=') {
            Some((a, b)) => (a.to_string(), Some(b.to_string())),
            None => (v.to_string(), None),
        };
        Filter::Label { key, value, negate }
    };
    Ok(match k {
        "dangling" => match v {
            "true" | "1" => Filter::Dangling(true),
            "false" | "0" => Filter::Dangling(false),
            _ => bail!("invalid filter 'dangling={v}'"),
        },
        "name" => Filter::Name(v.to_string()),
        "driver" => Filter::Driver(v.to_string()),
        "label!" => label(true),
        _ => label(false),
    })
}

fn filter_matches(f: &Filter, v: &Volume) -> bool {
    match f {
        Filter::Dangling(d) => v.used_by.is_empty() == *d,
        Filter::Name(n) => v.name.contains(n.as_str()),
        Filter::Driver(d) => d == "local",
        Filter::Label { key, value, negate } => {
            let has = v
                .labels
                .get(key)
                .is_some_and(|x| value.as_ref().is_none_or(|want| want == x));
            has != *negate
        }
    }
}

/// Docker's rule: filters with the same key are alternatives, different keys all hold.
fn keep(filters: &[Filter], v: &Volume) -> bool {
    let key = |f: &Filter| std::mem::discriminant(f);
    filters.iter().all(|f| {
        filters
            .iter()
            .filter(|g| key(g) == key(f))
            .any(|g| filter_matches(g, v))
    })
}

/// `2026-11-26T05:43:52Z`: RFC 3339 to the second, as Docker shows it.
fn created_at(v: &Volume) -> String {
    match v.created.split_once('.') {
        Some((secs, _)) => format!("{secs}Z"),
        None => v.created.clone(),
    }
}

fn labels_text(v: &Volume) -> String {
    v.labels
        .iter()
        .map(|(k, x)| format!("{k}={x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Docker's `volume inspect` object (keys in its order).
fn inspect_json(v: &Volume) -> Value {
    json!({
        "CreatedAt": created_at(v),
        "Driver": "local",
        "Labels": if v.labels.is_empty() { Value::Null } else { json!(v.labels) },
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": Value::Null,
        "Scope": "local",
    })
}

/// `inspect [--type volume] NAME`: the volume's inspect object.
pub(crate) fn inspect_doc(e: &mut Engine, name: &str) -> Result<Value> {
    Ok(inspect_json(&e.volume_get(name)?))
}

/// The fields a `volume ls --format` template sees.
fn ls_row(v: &Volume) -> Value {
    json!({
        "Name": v.name,
        "Driver": "local",
        "Scope": "local",
        "Mountpoint": v.mountpoint,
        "Labels": labels_text(v),
        "CreatedAt": created_at(v),
        "Links": v.used_by.len(),
        "Size": "N/A",
    })
}

fn ls(e: &mut Engine, quiet: bool, filter: &[String], format: Option<&str>) -> Result<()> {
    let allowed = ["dangling", "name", "label", "label!", "driver"];
    let filters = filter
        .iter()
        .map(|f| parse_filter(f, &allowed))
        .collect::<Result<Vec<_>>>()?;
    let shown: Vec<Volume> = e
        .volume_list()?
        .into_iter()
        .filter(|v| keep(&filters, v))
        .collect();
    if quiet {
        for v in &shown {
            println!("{}", v.name);
        }
        return Ok(());
    }
    let t = Template::parse(format.unwrap_or("table {{.Driver}}\t{{.Name}}"))?;
    if !t.table {
        for v in &shown {
            println!("{}", t.render(&ls_row(v))?);
        }
        return Ok(());
    }
    let split = |s: String| s.split('\t').map(str::to_string).collect::<Vec<_>>();
    let mut rows = vec![split(t.header_with(&[("Name", "VOLUME NAME")]))];
    for v in &shown {
        rows.push(split(t.render(&ls_row(v))?));
    }
    // Docker's tabwriter here has a minimum width of 10 (cell plus 3 of padding).
    for r in &mut rows {
        if let Some(last) = r.len().checked_sub(1) {
            for cell in &mut r[..last] {
                while cell.chars().count() < 7 {
                    cell.push(' ');
                }
            }
        }
    }
    print_table(&rows);
    Ok(())
}

fn inspect(e: &mut Engine, format: Option<&str>, names: &[String]) -> Result<()> {
    let tpl = format.map(Template::parse).transpose()?;
    let mut docs = Vec::new();
    let mut failed = None;
    for n in names {
        match e.volume_get(n) {
            Ok(v) => docs.push(inspect_json(&v)),
            Err(err) => {
                eprintln!("berth: {err}");
                failed = Some(err);
            }
        }
    }
    match &tpl {
        Some(t) => {
            for d in &docs {
                println!("{}", t.render(d)?);
            }
        }
        None => println!("{}", pretty4(&Value::Array(docs))?),
    }
    match failed {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

/// JSON indented by four spaces, as Docker prints `inspect` (serde_json's pretty form
/// indents by two; a JSON string never holds a raw newline, so each line's indent is
/// simply doubled).
fn pretty4(v: &Value) -> Result<String> {
    let two = serde_json::to_string_pretty(v)?;
    let lines: Vec<String> = two
        .lines()
        .map(|l| {
            let body = l.trim_start_matches(' ');
            format!("{}{body}", " ".repeat(2 * (l.len() - body.len())))
        })
        .collect();
    Ok(lines.join("\n"))
}

fn prune(e: &mut Engine, all: bool, filter: &[String], force: bool) -> Result<()> {
    let filters = filter
        .iter()
        .map(|f| parse_filter(f, &["label", "label!", "all"]))
        .collect::<Result<Vec<_>>>()?;
    // `--filter all=true` is the API's spelling of `--all`.
    let all = all || filter.iter().any(|f| f == "all=true" || f == "all=1");
    let filters: Vec<Filter> = filters
        .into_iter()
        .filter(|f| matches!(f, Filter::Label { .. }))
        .collect();
    if !force && !confirm(all)? {
        bail!("volume prune has been cancelled");
    }
    let (removed, bytes) = e.volume_prune(all, |v| !keep(&filters, v))?;
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for n in &removed {
            println!("{n}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(())
}

fn confirm(all: bool) -> Result<bool> {
    let which = if all { "all" } else { "anonymous" };
    print!(
        "WARNING! This will remove {which} local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] "
    );
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Go's `units.HumanSize`: decimal units, four significant digits.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    let int_digits = if v < 10.0 {
        1
    } else if v < 100.0 {
        2
    } else {
        3
    };
    let mut s = format!("{v:.*}", 4 - int_digits);
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str, labels: &[(&str, &str)], used: bool) -> Volume {
        Volume {
            name: name.into(),
            created: "2026-11-26T05:43:52.123456789Z".into(),
            anonymous: false,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mountpoint: format!("/r/volumes/{name}/_data").into(),
            used_by: if used { vec!["c1".into()] } else { vec![] },
        }
    }

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(12), "12B");
        assert_eq!(human_size(1234), "1.234kB");
        assert_eq!(human_size(4096), "4.096kB");
        assert_eq!(human_size(10_500_000), "10.5MB");
        assert_eq!(human_size(100_000), "100kB");
    }

    #[test]
    fn filters_combine_like_docker() {
        let allowed = ["dangling", "name", "label", "label!", "driver"];
        let f = |s: &[&str]| {
            s.iter()
                .map(|x| parse_filter(x, &allowed).unwrap())
                .collect::<Vec<_>>()
        };
        let a = vol("alpha", &[("env", "prod")], true);
        let b = vol("beta", &[("env", "dev"), ("x", "")], false);
        assert!(keep(&f(&["dangling=true"]), &b) && !keep(&f(&["dangling=true"]), &a));
        assert!(keep(&f(&["dangling=false"]), &a));
        assert!(keep(&f(&["name=alp"]), &a) && !keep(&f(&["name=alp"]), &b));
        assert!(keep(&f(&["name=alp", "name=bet"]), &b), "same key: any");
        assert!(!keep(&f(&["name=bet", "dangling=false"]), &b), "keys: all");
        assert!(keep(&f(&["label=env=prod"]), &a) && !keep(&f(&["label=env=prod"]), &b));
        assert!(keep(&f(&["label=x"]), &b) && !keep(&f(&["label=x"]), &a));
        assert!(keep(&f(&["label!=x"]), &a));
        assert!(parse_filter("bogus=1", &allowed).is_err());
        assert!(parse_filter("dangling=maybe", &allowed).is_err());
    }

    #[test]
    fn inspect_object_has_docker_keys() {
        let v = inspect_json(&vol("data", &[], false));
        assert_eq!(v["CreatedAt"], "2026-11-26T05:43:52Z");
        assert_eq!(v["Labels"], Value::Null);
        assert_eq!(v["Mountpoint"], "/r/volumes/data/_data");
        let text = pretty4(&Value::Array(vec![v])).unwrap();
        assert!(
            text.starts_with("[\n    {\n        \"CreatedAt\""),
            "{text}"
        );
    }
}
