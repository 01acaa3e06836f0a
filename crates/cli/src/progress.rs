//! Pull progress: one line per layer redrawn in place on a terminal (like `docker pull`),
//! plain status lines otherwise.

use std::io::{self, Write};
use std::sync::Mutex;

use berth_image::{Digest, PullEvent, PullProgress};

#[derive(Debug)]
struct Row {
    digest: Digest,
    status: String,
}

#[derive(Debug, Default)]
struct State {
    rows: Vec<Row>,
    drawn: usize,
}

/// Progress on stderr.
#[derive(Debug)]
pub(crate) struct TerminalProgress {
    tty: bool,
    quiet: bool,
    state: Mutex<State>,
    fetched: std::sync::atomic::AtomicBool,
}

fn bar(done: u64, total: u64) -> String {
    const W: usize = 40;
    let filled = (done.min(total) * W as u64)
        .checked_div(total)
        .map_or(0, |f| usize::try_from(f).unwrap_or(W));
    let arrow = if filled < W { ">" } else { "" };
    format!(
        "[{}{}{}] {:.1}MB/{:.1}MB",
        "=".repeat(filled.saturating_sub(1)),
        arrow,
        " ".repeat(W - filled.max(1)),
        done as f64 / 1e6,
        total as f64 / 1e6
    )
}

impl TerminalProgress {
    pub(crate) fn new(tty: bool, quiet: bool) -> TerminalProgress {
        TerminalProgress {
            tty,
            quiet,
            state: Mutex::new(State::default()),
            fetched: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Update a row; without a terminal, print it when its status text changes.
    fn set(&self, digest: &Digest, status: String, announce: bool) {
        if self.quiet {
            return;
        }
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let changed = match st.rows.iter_mut().find(|r| r.digest == *digest) {
            Some(r) => {
                let changed = r.status != status;
                r.status = status.clone();
                changed
            }
            None => {
                st.rows.push(Row {
                    digest: digest.clone(),
                    status: status.clone(),
                });
                true
            }
        };
        let mut err = io::stderr().lock();
        if self.tty {
            redraw(&mut st, &mut err);
        } else if announce && changed {
            let _ = writeln!(err, "{}: {status}", digest.short());
        }
    }

    /// Whether any layer was downloaded (for Docker's closing status line).
    pub(crate) fn downloaded(&self) -> bool {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn redraw(st: &mut State, err: &mut impl Write) {
    if st.drawn > 0 {
        let _ = write!(err, "\x1b[{}A", st.drawn);
    }
    for r in &st.rows {
        let _ = writeln!(err, "\x1b[2K{}: {}", r.digest.short(), r.status);
    }
    st.drawn = st.rows.len();
    let _ = err.flush();
}

impl PullProgress for TerminalProgress {
    fn event(&self, ev: PullEvent<'_>) {
        match ev {
            PullEvent::Resolved { layers, .. } => {
                for l in layers {
                    self.set(&l.digest, "Waiting".into(), false);
                }
            }
            PullEvent::LayerExists(d) => self.set(d, "Already exists".into(), true),
            PullEvent::LayerProgress {
                digest,
                done,
                total,
            } => {
                let status = if self.tty {
                    format!("Downloading {}", bar(done, total))
                } else {
                    "Downloading".into()
                };
                self.set(digest, status, true);
            }
            PullEvent::LayerDone(d) => {
                self.fetched
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.set(d, "Pull complete".into(), true);
            }
        }
    }
}
