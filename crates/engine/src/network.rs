//! The network seam: which network namespace a container gets, and (later) where bridge
//! attach/detach happen. Only `none`, `host` and `container:<id>` are implemented here;
//! `bridge` is the `berth-net` crate's job and is refused until it is wired in.

use crate::spec::NsJoin;

/// Why a network mode cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network mode `{0}` is not supported yet (use none, host or container:<name|id>)")]
    Unsupported(String),
}

/// A parsed `--network` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A private namespace with only loopback.
    None,
    /// The host's namespace.
    Host,
    /// Another container's namespace.
    Container(String),
}

/// Parses `--network`. The default (`""`/`default`) is a private namespace until bridge
/// networking is wired in.
pub fn parse_mode(s: &str) -> Result<NetworkMode, NetworkError> {
    match s {
        "" | "none" | "default" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        _ => match s.strip_prefix("container:") {
            Some(c) if !c.is_empty() => Ok(NetworkMode::Container(c.to_string())),
            _ => Err(NetworkError::Unsupported(s.to_string())),
        },
    }
}

/// The namespace join for a mode; `pid_of` finds a running container's init pid.
pub(crate) fn join(mode: &NetworkMode, pid_of: Option<i32>) -> Option<NsJoin> {
    match mode {
        NetworkMode::None => None,
        NetworkMode::Host => Some(NsJoin {
            kind: "network",
            path: None,
        }),
        NetworkMode::Container(_) => Some(NsJoin {
            kind: "network",
            path: pid_of.map(|p| format!("/proc/{p}/ns/net")),
        }),
    }
}

/// Called once the container's init exists and before it starts; the place where a
/// bridge attach (veth, address, port publishing) will go.
pub(crate) fn attach(_mode: &NetworkMode, _id: &str, _pid: i32) -> Result<(), NetworkError> {
    Ok(())
}

/// Called after the container stopped; the place where a bridge detach will go.
pub(crate) fn detach(_mode: &NetworkMode, _id: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("host").unwrap(), NetworkMode::Host);
        assert_eq!(
            parse_mode("container:web").unwrap(),
            NetworkMode::Container("web".into())
        );
        assert!(parse_mode("bridge").is_err());
        assert!(parse_mode("container:").is_err());
    }
}
