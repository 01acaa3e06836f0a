//! Container ids (64 hex digits from the kernel's random pool) and Docker-style random
//! names (`adjective_surname`).

use std::fs::File;
use std::io::Read;

const ADJECTIVES: &[&str] = &[
    "admiring",
    "brave",
    "calm",
    "clever",
    "eager",
    "elated",
    "focused",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "tender",
    "upbeat",
    "vigilant",
    "wizardly",
    "zealous",
];
const SURNAMES: &[&str] = &[
    "babbage", "curie", "darwin", "euler", "fermat", "gauss", "hopper", "hypatia", "kepler",
    "lamport", "lovelace", "meitner", "noether", "pascal", "ritchie", "shannon", "thompson",
    "turing", "wozniak", "yalow",
];

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if let Ok(mut f) = File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b
}

/// A new 64-hex-digit container id.
pub fn new_id() -> String {
    random_bytes::<32>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random name; `attempt` > 0 adds a number, as Docker does after a clash.
pub fn random_name(attempt: u32) -> String {
    let b = random_bytes::<2>();
    let a = ADJECTIVES[usize::from(b[0]) % ADJECTIVES.len()];
    let s = SURNAMES[usize::from(b[1]) % SURNAMES.len()];
    if attempt == 0 {
        format!("{a}_{s}")
    } else {
        format!("{a}_{s}{attempt}")
    }
}

/// Docker's rule for user-given names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && n.len() >= 2
        && c.all(|x| x.is_ascii_alphanumeric() || "_.-".contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_id());
        assert!(valid_name(&random_name(0)));
        assert!(valid_name("web-1.x"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("a/b"));
    }
}
