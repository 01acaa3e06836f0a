//! The image commands: `pull`, `images`, `rmi`, `tag`, `import`, `login`, `logout` at top
//! level, and the same under `berth image …` (`ls`, `rm`, `inspect`, …).

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use berth_image::{
    AuthFiles, ClientOptions, Credentials, Image, Platform, PullOptions, Reference, RegistryClient,
    Store, StoreError, UnpackOptions,
};
use clap::{Args, Subcommand};

use crate::Globals;
use crate::progress::TerminalProgress;

/// Image commands available at top level.
#[derive(Debug, Subcommand)]
pub(crate) enum TopCommand {
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// List images.
    Images(ListArgs),
    /// Remove images.
    Rmi(RmiArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(TagArgs),
    /// Import a root filesystem tarball as an image.
    Import(ImportArgs),
    /// Write images to a tar archive (OCI layout + docker-archive).
    Save(SaveArgs),
    /// Load images from a docker-archive or OCI-layout tar.
    Load(LoadArgs),
    /// Log in to a registry.
    Login(LoginArgs),
    /// Log out from a registry.
    Logout(LogoutArgs),
}

/// `berth image …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Remove images.
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(TagArgs),
    /// Show images as JSON.
    Inspect(InspectArgs),
    /// Import a root filesystem tarball as an image.
    Import(ImportArgs),
    /// Write images to a tar archive (OCI layout + docker-archive).
    Save(SaveArgs),
    /// Load images from a docker-archive or OCI-layout tar.
    Load(LoadArgs),
    /// Remove unreferenced blobs, layers and leftovers of interrupted pulls.
    Prune,
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// Image reference, e.g. busybox or 127.0.0.1:5000/app:v1.
    name: String,
    /// Platform to pick from a multi-arch image: os/arch[/variant].
    #[arg(long)]
    platform: Option<Platform>,
    /// Registry (host:port) to reach over plain HTTP (loopback ones always are).
    #[arg(
        long = "insecure-registry",
        env = "BERTH_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure: Vec<String>,
    /// Print only the image id.
    #[arg(short, long)]
    quiet: bool,
    /// Layers downloaded and unpacked at once.
    #[arg(long, default_value_t = 3)]
    max_concurrent_downloads: usize,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print only image ids.
    #[arg(short, long)]
    quiet: bool,
    /// Show full image ids.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RmiArgs {
    /// Images (reference or id).
    #[arg(required = true)]
    names: Vec<String>,
    /// Remove an image even if several tags name it.
    #[arg(short, long)]
    force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TagArgs {
    /// Existing image.
    source: String,
    /// New name.
    target: String,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Images (reference or id).
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Tarball path, or `-` for stdin.
    file: String,
    /// Name for the new image.
    reference: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SaveArgs {
    /// Images (reference or id).
    #[arg(required = true)]
    names: Vec<String>,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Read from this file instead of stdin.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Print only the loaded ids.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// Registry host[:port].
    registry: String,
    /// User name.
    #[arg(short, long)]
    username: String,
    /// Password (prefer --password-stdin).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Reach the registry over plain HTTP.
    #[arg(
        long = "insecure-registry",
        env = "BERTH_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LogoutArgs {
    /// Registry host[:port].
    registry: String,
}

/// Run a top-level image command.
pub(crate) fn run_top(g: &Globals, c: TopCommand) -> Result<()> {
    match c {
        TopCommand::Pull(a) => pull(g, a),
        TopCommand::Images(a) => list(g, a),
        TopCommand::Rmi(a) => remove(g, a),
        TopCommand::Tag(a) => tag(g, a),
        TopCommand::Import(a) => import(g, a),
        TopCommand::Save(a) => save(g, a),
        TopCommand::Load(a) => load(g, a),
        TopCommand::Login(a) => login(g, a),
        TopCommand::Logout(a) => logout(g, a),
    }
}

/// Run `berth image …`.
pub(crate) fn run_group(g: &Globals, c: ImageCommand) -> Result<()> {
    match c {
        ImageCommand::Pull(a) => pull(g, a),
        ImageCommand::Ls(a) => list(g, a),
        ImageCommand::Rm(a) => remove(g, a),
        ImageCommand::Tag(a) => tag(g, a),
        ImageCommand::Inspect(a) => inspect(g, a),
        ImageCommand::Import(a) => import(g, a),
        ImageCommand::Save(a) => save(g, a),
        ImageCommand::Load(a) => load(g, a),
        ImageCommand::Prune => open_store(g)?
            .collect_garbage()
            .context("prune image store"),
    }
}

fn open_store(g: &Globals) -> Result<Store> {
    Store::open(&g.root).with_context(|| format!("open image store under `{}`", g.root.display()))
}

fn parse_ref(s: &str) -> Result<Reference> {
    s.parse::<Reference>().map_err(|e| anyhow!(e))
}

/// Resolve with Docker's hint when the image is missing.
fn resolve(store: &Store, name: &str) -> Result<Image> {
    match store.resolve(name) {
        Ok(i) => Ok(i),
        Err(StoreError::NotFound(_)) => {
            bail!("image `{name}` not found locally; run `berth pull {name}`")
        }
        Err(e) => Err(e.into()),
    }
}

fn client(g: &Globals, insecure: Vec<String>) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        insecure,
        auth: AuthFiles::standard(&g.root),
    })
}

fn pull(g: &Globals, a: PullArgs) -> Result<()> {
    let store = open_store(g)?;
    let reference = parse_ref(&a.name)?;
    let client = client(g, a.insecure);
    let mut opts = PullOptions {
        jobs: a.max_concurrent_downloads,
        ..Default::default()
    };
    if let Some(p) = a.platform {
        opts.platform = p;
    }
    let tty = io::stderr().is_terminal() && !a.quiet;
    let progress = TerminalProgress::new(tty, a.quiet);
    if !a.quiet {
        eprintln!("Pulling {}", reference);
    }
    let img = berth_image::pull(&store, &client, &reference, &opts, &progress)?;

    if a.quiet {
        println!("{}", img.record.id);
    } else {
        if let Some(m) = &img.record.manifest {
            println!("Digest: {m}");
        }
        if progress.downloaded() {
            println!("Status: Downloaded newer image for {reference}");
        } else {
            println!("Status: Image is up to date for {reference}");
        }
        println!("{}", img.record.id);
    }
    Ok(())
}

/// `N units ago` as Docker prints it.
fn ago(created: Option<&str>) -> String {
    let Some(secs) = created.and_then(parse_rfc3339) else {
        return "N/A".into();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let d = now.saturating_sub(secs);
    let (n, unit) = match d {
        0..=59 => (d, "second"),
        60..=3599 => (d / 60, "minute"),
        3600..=86_399 => (d / 3600, "hour"),
        86_400..=1_209_599 => (d / 86_400, "day"),
        1_209_600..=5_183_999 => (d / 604_800, "week"),
        5_184_000..=63_071_999 => (d / 2_592_000, "month"),
        _ => (d / 31_536_000, "year"),
    };
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS…`.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Sizes as Docker prints them (decimal units).
fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

fn list(g: &Globals, a: ListArgs) -> Result<()> {
    let store = open_store(g)?;
    let mut images = store.list()?;
    images.sort_by(|x, y| y.record.created.cmp(&x.record.created));
    let mut out = io::stdout().lock();
    if a.quiet {
        for i in &images {
            writeln!(
                out,
                "{}",
                if a.no_trunc {
                    i.record.id.to_string()
                } else {
                    i.record.id.short().to_string()
                }
            )?;
        }
        return Ok(());
    }
    let mut rows = vec![[
        "REPOSITORY".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "CREATED".into(),
        "SIZE".into(),
    ]];
    for i in &images {
        let id = if a.no_trunc {
            i.record.id.to_string()
        } else {
            i.record.id.short().to_string()
        };
        let mut names: Vec<(String, String)> = Vec::new();
        for t in &i.repo_tags {
            if let Ok(r) = t.parse::<Reference>() {
                names.push((r.familiar_name(), r.tag().unwrap_or("<none>").to_string()));
            }
        }
        if names.is_empty() {
            names.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in names {
            rows.push([
                repo,
                tag,
                id.clone(),
                ago(i.record.created.as_deref()),
                human_size(i.record.size),
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end())?;
    }
    Ok(())
}

fn remove(g: &Globals, a: RmiArgs) -> Result<()> {
    let store = open_store(g)?;
    let mut failed = false;
    for name in &a.names {
        match store.remove(name, a.force) {
            Ok(deleted) => {
                if name.parse::<Reference>().is_ok() && store.resolve(name).is_err() {
                    println!("Untagged: {name}");
                }
                for d in deleted {
                    println!("Deleted: {d}");
                }
            }
            Err(StoreError::NotFound(_)) => {
                eprintln!("berth: image `{name}` not found locally");
                failed = true;
            }
            Err(e) => {
                eprintln!("berth: remove image `{name}`: {:#}", anyhow!(e));
                failed = true;
            }
        }
    }
    if failed {
        bail!("some images could not be removed");
    }
    Ok(())
}

fn tag(g: &Globals, a: TagArgs) -> Result<()> {
    let store = open_store(g)?;
    let target = parse_ref(&a.target)?;
    resolve(&store, &a.source)?;
    store.tag(&a.source, &target)?;
    Ok(())
}

fn inspect_json(store: &Store, img: &Image) -> serde_json::Value {
    let c = &img.config;
    let layers: Vec<String> = img
        .record
        .layers
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    let dirs: Vec<String> = img
        .record
        .layers
        .iter()
        .map(|l| store.layer_diff(&l.chain_id).display().to_string())
        .collect();
    serde_json::json!({
        "Id": img.record.id.to_string(),
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Created": img.record.created,
        "Size": img.record.size,
        "Architecture": c.architecture().to_string(),
        "Os": c.os().to_string(),
        "Variant": c.variant(),
        "Author": c.author(),
        "Config": c.config(),
        "History": c.history(),
        "RootFS": {"Type": "layers", "Layers": layers},
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDirs": dirs}},
        "Manifest": img.record.manifest.as_ref().map(|m| m.to_string()),
    })
}

fn inspect(g: &Globals, a: InspectArgs) -> Result<()> {
    let store = open_store(g)?;
    let mut out = Vec::new();
    for name in &a.names {
        out.push(inspect_json(&store, &resolve(&store, name)?));
    }
    writeln!(
        io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&out)?
    )?;
    Ok(())
}

fn import(g: &Globals, a: ImportArgs) -> Result<()> {
    let store = open_store(g)?;
    let tag = a.reference.as_deref().map(parse_ref).transpose()?;
    let reader: Box<dyn Read> = if a.file == "-" {
        Box::new(io::stdin().lock())
    } else {
        let p = PathBuf::from(&a.file);
        Box::new(File::open(&p).with_context(|| format!("open tarball `{}`", p.display()))?)
    };
    let img = berth_image::import(&store, reader, tag.as_ref(), UnpackOptions::default())?;
    println!("{}", img.record.id);
    Ok(())
}

fn save(g: &Globals, a: SaveArgs) -> Result<()> {
    let store = open_store(g)?;
    let mut images = Vec::new();
    for n in &a.names {
        let img = resolve(&store, n)?;
        let name = n
            .parse::<Reference>()
            .ok()
            .filter(|r| img.repo_tags.contains(&r.to_string()));
        images.push((img, name));
    }
    match &a.output {
        Some(p) => {
            let tmp = p.with_extension("partial");
            let f = File::create(&tmp).with_context(|| format!("create `{}`", tmp.display()))?;
            let mut w = io::BufWriter::new(f);
            berth_image::save(&store, &images, &mut w)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()
                .with_context(|| format!("sync `{}`", tmp.display()))?;
            std::fs::rename(&tmp, p).with_context(|| format!("rename to `{}`", p.display()))?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal; use -o FILE or redirect stdout");
            }
            berth_image::save(&store, &images, io::BufWriter::new(io::stdout().lock()))?;
        }
    }
    Ok(())
}

fn load(g: &Globals, a: LoadArgs) -> Result<()> {
    let store = open_store(g)?;
    let reader: Box<dyn Read> = match &a.input {
        Some(p) => {
            Box::new(File::open(p).with_context(|| format!("open archive `{}`", p.display()))?)
        }
        None => Box::new(io::stdin().lock()),
    };
    let images = berth_image::load(
        &store,
        io::BufReader::with_capacity(1 << 20, reader),
        UnpackOptions::default(),
    )?;
    let mut out = io::stdout().lock();
    for img in images {
        if a.quiet || img.repo_tags.is_empty() {
            writeln!(out, "Loaded image ID: {}", img.record.id)?;
        }
        if !a.quiet {
            for t in &img.repo_tags {
                writeln!(out, "Loaded image: {t}")?;
            }
        }
    }
    Ok(())
}

fn login(g: &Globals, a: LoginArgs) -> Result<()> {
    let password = match (a.password, a.password_stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut line = String::new();
            io::stdin()
                .lock()
                .read_line(&mut line)
                .context("read password from stdin")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        _ => bail!("give exactly one of --password or --password-stdin"),
    };
    let creds = Credentials {
        username: a.username,
        password,
    };
    let registry = a
        .registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    client(g, a.insecure).check_login(registry, &creds)?;
    AuthFiles::standard(&g.root).login(registry, &creds)?;
    println!("Login Succeeded");
    Ok(())
}

fn logout(g: &Globals, a: LogoutArgs) -> Result<()> {
    if AuthFiles::standard(&g.root).logout(&a.registry)? {
        println!("Removing login credentials for {}", a.registry);
        Ok(())
    } else {
        bail!("not logged in to `{}`", a.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_and_times() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.261MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.5Z"), Some(0));
        assert_eq!(ago(None), "N/A");
    }
}
