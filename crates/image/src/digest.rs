//! Content digests (`sha256:<hex>`) and a reader that hashes what passes through it.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A parse failure of a digest string.
#[derive(Debug, thiserror::Error)]
pub enum ParseDigestError {
    /// Only sha256 is accepted.
    #[error("digest `{0}`: unsupported algorithm (only sha256)")]
    Algorithm(String),
    /// The hex part is not 64 lowercase hex digits.
    #[error("digest `{0}`: expected 64 lowercase hex digits")]
    Hex(String),
}

/// A verified-form sha256 digest, e.g. `sha256:e3b0…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The sha256 digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::of_hash(Sha256::digest(data).as_slice())
    }

    /// A digest from a finished sha256 hash.
    pub(crate) fn of_hash(bytes: &[u8]) -> Digest {
        let mut hex = String::with_capacity(64);
        for b in bytes {
            hex.push_str(&format!("{b:02x}"));
        }
        Digest { hex }
    }

    /// The 64 hex digits without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as `docker images` shows ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(hex) = s.strip_prefix("sha256:") else {
            return Err(ParseDigestError::Algorithm(s.to_string()));
        };
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ParseDigestError::Hex(s.to_string()));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A reader that hashes and counts every byte read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    /// Hash `inner`; reading more than `limit` bytes fails with `FileTooLarge`.
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
        }
    }

    /// Read `inner` to its end (so trailing bytes are hashed too) and return digest, size
    /// and the inner reader.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64, R)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            Digest::of_hash(self.hasher.finalize().as_slice()),
            self.count,
            self.inner,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("stream exceeds the bound of {} bytes", self.limit),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!("sha512:abc".parse::<Digest>().is_err());
        assert!("sha256:ABC".parse::<Digest>().is_err());
        assert!(
            format!("sha256:{}", "A".repeat(64))
                .parse::<Digest>()
                .is_err()
        );
    }

    #[test]
    fn hashing_reader_bounds_and_hashes() {
        let data = vec![7u8; 1000];
        let r = HashingReader::new(&data[..], 1000);
        let (d, n, _) = r.finish().unwrap();
        assert_eq!((d, n), (Digest::of(&data), 1000));
        let r = HashingReader::new(&data[..], 999);
        assert_eq!(r.finish().unwrap_err().kind(), io::ErrorKind::FileTooLarge);
    }
}
