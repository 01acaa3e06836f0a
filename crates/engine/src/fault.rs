//! `BERTH_FAULT=<point>`: fault injection for the crash tests. At the named point the
//! process kills itself with SIGKILL, so a test can put a crash exactly where timing alone
//! would rarely land (e.g. between a `--rm` monitor's exit report and its cleanup) and
//! check that the next commands tell the truth and clean up. Off, a point costs one cached
//! environment lookup.

use std::sync::OnceLock;

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Dies here (SIGKILL to itself) if `BERTH_FAULT` names `point`.
pub(crate) fn point(point: &str) {
    let armed = ARMED.get_or_init(|| std::env::var("BERTH_FAULT").ok().filter(|v| !v.is_empty()));
    if armed.as_deref() == Some(point) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
