//! Errors and debug lines: to stderr, and to `--log` in text or runc's JSON line format
//! (`{"level":"error","msg":"…","time":"…"}`), which conmon and containerd read back.

use std::io::Write;
use std::path::Path;

pub(crate) struct Logger {
    file: Option<std::fs::File>,
    json: bool,
}

impl Logger {
    pub(crate) fn new(path: Option<&Path>, json: bool) -> Self {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        Self { file, json }
    }

    pub(crate) fn error(&self, msg: &str) {
        eprintln!("berth-runtime: {msg}");
        if let Some(mut f) = self.file.as_ref() {
            let line = if self.json {
                serde_json::json!({
                    "level": "error",
                    "msg": msg,
                    "time": now(),
                })
                .to_string()
            } else {
                format!("time=\"{}\" level=error msg={:?}", now(), msg)
            };
            let _ = writeln!(f, "{line}");
        }
    }
}

fn now() -> String {
    berth_runtime::state::now_rfc3339()
}
