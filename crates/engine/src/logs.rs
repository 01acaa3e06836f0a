//! Docker's json-file log format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"RFC 3339 nanos"}`, written by the monitor and
//! read back by `logs`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One log entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogEntry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Longest partial line kept before it is written as its own entry (Docker: 16 KiB).
const MAX_PARTIAL: usize = 16 * 1024;

/// Splits a stream into lines and appends them to the log file.
#[derive(Debug)]
pub(crate) struct LineWriter {
    stream: &'static str,
    partial: Vec<u8>,
}

impl LineWriter {
    pub(crate) fn new(stream: &'static str) -> Self {
        Self {
            stream,
            partial: Vec::new(),
        }
    }

    /// Appends complete lines of `data` (and an over-long partial one) to `out`.
    pub(crate) fn push(&mut self, data: &[u8], out: &mut Option<File>) {
        self.partial.extend_from_slice(data);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            self.emit(&line, out);
        }
        if self.partial.len() >= MAX_PARTIAL {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line, out);
        }
    }

    /// Writes what is left (at end of stream).
    pub(crate) fn flush(&mut self, out: &mut Option<File>) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line, out);
        }
    }

    fn emit(&self, line: &[u8], out: &mut Option<File>) {
        let Some(f) = out else { return };
        let e = LogEntry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: self.stream.to_string(),
            time: crate::time::now(),
        };
        let mut text = serde_json::to_vec(&e).unwrap_or_default();
        text.push(b'\n');
        // A full disk must not stop the container: drop the line.
        let _ = f.write_all(&text);
    }
}

/// What `logs` should print.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only entries at or after this time.
    pub since: Option<SystemTime>,
}

/// Reads the entries of `path` from byte `offset`; returns them and the offset after the
/// last complete line.
pub fn read_entries(path: &Path, offset: u64) -> io::Result<(Vec<LogEntry>, u64)> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut r = BufReader::new(f);
    let mut pos = offset;
    let mut out = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_str::<LogEntry>(&line) {
            out.push(e);
        }
    }
    Ok((out, pos))
}

/// Applies `--since` and `--tail`.
pub fn filter(entries: Vec<LogEntry>, f: &LogFilter) -> Vec<LogEntry> {
    let mut v: Vec<LogEntry> = match f.since {
        Some(t) => entries
            .into_iter()
            .filter(|e| crate::time::parse(&e.time).is_some_and(|et| et >= t))
            .collect(),
        None => entries,
    };
    if let Some(n) = f.tail {
        let skip = v.len().saturating_sub(n);
        v.drain(..skip);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x-json.log");
        let mut out = Some(File::create(&p).unwrap());
        let mut w = LineWriter::new("stdout");
        w.push(b"hel", &mut out);
        w.push(b"lo\nwor", &mut out);
        w.push(b"ld\nrest", &mut out);
        w.flush(&mut out);
        let (e, end) = read_entries(&p, 0).unwrap();
        let logs: Vec<_> = e.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(logs, ["hello\n", "world\n", "rest"]);
        assert_eq!(end, std::fs::metadata(&p).unwrap().len());
        let tail = filter(
            e,
            &LogFilter {
                tail: Some(1),
                since: None,
            },
        );
        assert_eq!(tail[0].log, "rest");
    }
}
