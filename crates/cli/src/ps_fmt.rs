//! `ps` (Docker's columns, `--filter`, `--format`, `--no-trunc`, `-q`) and `top`.

use std::time::SystemTime;

use anyhow::{Result, bail};
use berth_engine::{ContainerRecord, Engine, Status};
use clap::Args;
use serde_json::{Value, json};

use crate::template::Template;

#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Filter output based on conditions provided (status=, name=, id=, label=, exited=, ancestor=).
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output using a Go template.
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
}

fn ago(ts: &str) -> String {
    berth_engine::parse_time(ts)
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(berth_engine::human_duration)
        .unwrap_or_default()
}

/// Docker's STATUS column.
pub(crate) fn status_text(r: &ContainerRecord) -> String {
    let st = &r.state;
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", ago(&st.started_at)),
        Status::Paused => format!("Up {} (Paused)", ago(&st.started_at)),
        Status::Restarting => format!("Restarting ({}) {} ago", st.exit_code, ago(&st.finished_at)),
        Status::Exited => format!("Exited ({}) {} ago", st.exit_code, ago(&st.finished_at)),
        Status::Dead => "Dead".into(),
    }
}

fn row(r: &ContainerRecord, no_trunc: bool) -> Value {
    let mut cmd = r.argv().join(" ");
    if !no_trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    let labels: Vec<String> = r
        .config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    json!({
        "ID": if no_trunc { r.id.as_str() } else { r.short_id() },
        "Image": r.config.image,
        "Command": format!("\"{cmd}\""),
        "CreatedAt": r.created,
        "RunningFor": format!("{} ago", ago(&r.created)),
        "Status": status_text(r),
        "State": r.state.status.as_str(),
        "Ports": "",
        "Names": r.name,
        "Labels": labels.join(","),
        "Mounts": r.host_config.mounts.iter().map(|m| m.destination.clone()).collect::<Vec<_>>().join(","),
        "Networks": if r.host_config.network_mode.is_empty() { "none" } else { &r.host_config.network_mode },
    })
}

fn matches(r: &ContainerRecord, f: &str) -> Result<bool> {
    let Some((k, v)) = f.split_once('=') else {
        bail!("bad format of filter (expected name=value)");
    };
    Ok(match k {
        "status" => r.state.status.as_str() == v,
        "name" => r.name.contains(v),
        "id" => r.id.starts_with(v),
        "exited" => r.state.status == Status::Exited && r.state.exit_code.to_string() == v,
        "ancestor" => r.config.image == v || r.image_id.contains(v),
        "label" => match v.split_once('=') {
            Some((lk, lv)) => r.config.labels.get(lk).is_some_and(|x| x == lv),
            None => r.config.labels.contains_key(v),
        },
        _ => bail!("invalid filter '{k}'"),
    })
}

/// Prints rows aligned in columns three spaces apart (Go's tabwriter as Docker sets it).
pub(crate) fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// `ps --format`: a Go template per row, with a header for `table …`.
fn print_formatted(shown: &[ContainerRecord], f: &str, no_trunc: bool) -> Result<()> {
    let t = Template::parse(f)?;
    if !t.table {
        for r in shown {
            println!("{}", t.render(&row(r, no_trunc))?);
        }
        return Ok(());
    }
    let split = |s: String| s.split('\t').map(str::to_string).collect::<Vec<_>>();
    let mut rows = vec![split(t.header())];
    for r in shown {
        rows.push(split(t.render(&row(r, no_trunc))?));
    }
    print_table(&rows);
    Ok(())
}

pub(crate) fn ps(e: &mut Engine, a: &PsArgs) -> Result<()> {
    let mut recs = e.list()?;
    recs.reverse();
    let has_status_filter = a
        .filter
        .iter()
        .any(|f| f.starts_with("status=") || f.starts_with("exited="));
    let mut shown = Vec::new();
    for r in recs {
        if !a.all && !has_status_filter && !r.is_active() {
            continue;
        }
        let mut ok = true;
        for f in &a.filter {
            ok &= matches(&r, f)?;
        }
        if ok {
            shown.push(r);
        }
    }
    if a.quiet {
        for r in &shown {
            println!("{}", if a.no_trunc { &r.id } else { r.short_id() });
        }
        return Ok(());
    }
    if let Some(f) = &a.format {
        return print_formatted(&shown, f, a.no_trunc);
    }
    let mut rows = vec![
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for r in &shown {
        let v = row(r, a.no_trunc);
        rows.push(
            [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ]
            .iter()
            .map(|k| v[*k].as_str().unwrap_or_default().to_string())
            .collect(),
        );
    }
    print_table(&rows);
    Ok(())
}

/// `top`: the container's processes from `/proc` (UID PID PPID CMD).
pub(crate) fn top(e: &mut Engine, key: &str) -> Result<()> {
    let rec = e.get(key)?;
    if !rec.is_active() {
        bail!("container {} is not running", rec.name);
    }
    let mut rows = vec![["UID", "PID", "PPID", "CMD"].map(str::to_string).to_vec()];
    for pid in e.container_pids(&rec.id)? {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split(' ').nth(1))
            .unwrap_or("?")
            .to_string();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .trim_end()
            .to_string();
        rows.push(vec![uid, pid.to_string(), ppid, cmd]);
    }
    print_table(&rows);
    Ok(())
}
