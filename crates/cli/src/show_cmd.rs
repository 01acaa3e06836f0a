//! `logs`, `inspect` and `export`: showing a container's output, its record (or an
//! image's) and its filesystem.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use berth_engine::{Engine, LogFilter};
use clap::Args;

use crate::template::Template;

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all" for all).
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show logs since a timestamp (RFC 3339) or relative (e.g. 42m).
    #[arg(long)]
    since: Option<String>,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Format output using a Go template.
    #[arg(short, long)]
    format: Option<String>,
    /// Only `container`, `image` or `volume`.
    #[arg(long = "type")]
    kind: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

fn parse_since(s: &str) -> Result<SystemTime> {
    if let Some(t) = berth_engine::parse_time(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid value for \"since\": `{s}`"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("invalid value for \"since\": `{s}`"),
    };
    Ok(SystemTime::now() - Duration::from_secs(secs))
}

pub(crate) fn logs(e: &mut Engine, a: &LogsArgs) -> Result<()> {
    let rec = e.get(&a.container)?;
    if rec.host_config.log_driver == "none" {
        bail!("configured logging driver does not support reading");
    }
    let path = e.log_path(&rec.id);
    let filter = LogFilter {
        tail: if a.tail == "all" {
            None
        } else {
            Some(
                a.tail
                    .parse()
                    .with_context(|| format!("invalid --tail `{}`", a.tail))?,
            )
        },
        since: a.since.as_deref().map(parse_since).transpose()?,
    };
    let (entries, mut offset) = berth_engine::read_log(&path, 0)?;
    print_entries(berth_engine::filter_logs(entries, &filter), a.timestamps)?;
    if !a.follow {
        return Ok(());
    }
    loop {
        let active = e.get(&rec.id).map(|r| r.is_active()).unwrap_or(false);
        let (entries, next) = berth_engine::read_log(&path, offset)?;
        offset = next;
        print_entries(entries, a.timestamps)?;
        if !active {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print_entries(entries: Vec<berth_engine::LogEntry>, ts: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    for en in entries {
        let w: &mut dyn Write = if en.stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        if ts {
            write!(w, "{} ", en.time)?;
        }
        w.write_all(en.log.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

pub(crate) fn inspect(e: &mut Engine, a: &InspectArgs) -> Result<()> {
    let tpl = a.format.as_deref().map(Template::parse).transpose()?;
    let mut docs = Vec::new();
    let mut failed = None;
    for n in &a.names {
        let doc = match a.kind.as_deref() {
            Some("image") => image_doc(e, n),
            Some("container") => e.get(n).map(|r| e.inspect_value(&r)).map_err(Into::into),
            Some("volume") => crate::volume_cmd::inspect_doc(e, n),
            _ => e
                .get(n)
                .map(|r| e.inspect_value(&r))
                .map_err(anyhow::Error::from)
                .or_else(|_| image_doc(e, n))
                .or_else(|_| crate::volume_cmd::inspect_doc(e, n))
                .map_err(|_| anyhow::anyhow!("No such object: {n}")),
        };
        match doc {
            Ok(d) => docs.push(d),
            Err(err) => {
                eprintln!("berth: Error: {err:#}");
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
        None => println!("{}", serde_json::to_string_pretty(&docs)?),
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn image_doc(e: &Engine, name: &str) -> Result<serde_json::Value> {
    let img = e.image_store()?.resolve(name)?;
    let cfg = serde_json::to_value(img.config.config()).unwrap_or_default();
    Ok(serde_json::json!({
        "Id": img.record.id.to_string(),
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Created": img.record.created,
        "Size": img.record.size,
        "Architecture": img.config.architecture().to_string(),
        "Os": img.config.os().to_string(),
        "Config": cfg,
        "RootFS": {"Type": "layers", "Layers": img.record.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
    }))
}

/// `export [-o FILE]`: the container's filesystem as a tar stream.
pub(crate) fn export(e: &mut Engine, output: Option<&Path>, container: &str) -> Result<()> {
    let mut w: Box<dyn Write> = match output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("create `{}`", p.display()))?)
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            Box::new(io::stdout().lock())
        }
    };
    e.export(container, &mut w)?;
    Ok(w.flush()?)
}
