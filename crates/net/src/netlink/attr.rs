//! Netlink message building (header, fixed payload, nested attributes) and attribute walking.

use super::NLMSG_HDRLEN;

/// Attribute flag marking a nested attribute.
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
const NLA_HDRLEN: usize = 4;

/// Rounds `n` up to netlink's 4-byte alignment.
pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds one netlink message: header, fixed-size family header, attributes.
#[derive(Debug)]
pub(crate) struct MsgBuilder {
    kind: u16,
    flags: u16,
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl MsgBuilder {
    /// Starts a message of `kind` with extra `flags` (REQUEST/ACK are added by the sender).
    pub(crate) fn new(kind: u16, flags: u16) -> Self {
        Self {
            kind,
            flags,
            buf: vec![0; NLMSG_HDRLEN],
            nests: Vec::new(),
        }
    }

    /// Appends the fixed family header (e.g. `ifinfomsg`), padded to 4 bytes.
    pub(crate) fn header(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    fn pad(&mut self) {
        let aligned = align4(self.buf.len());
        self.buf.resize(aligned, 0);
    }

    /// Appends an attribute with a raw value.
    pub(crate) fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = u16::try_from(NLA_HDRLEN + value.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
        self
    }

    /// Appends raw bytes (a fixed header inside a nest), padded to 4 bytes.
    pub(crate) fn attr_raw_inline(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    /// Appends a NUL-terminated string attribute.
    pub(crate) fn attr_str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.attr(kind, &v)
    }

    /// Appends a native-endian u32 attribute (rtnetlink).
    pub(crate) fn attr_u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_ne_bytes())
    }

    /// Appends a big-endian u32 attribute (nftables).
    pub(crate) fn attr_be32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_be_bytes())
    }

    /// Opens a nested attribute; close it with [`MsgBuilder::end_nest`].
    pub(crate) fn begin_nest(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    /// Closes the innermost open nested attribute, writing its length.
    pub(crate) fn end_nest(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// Writes the header (length, type, flags, sequence) and returns the bytes.
    pub(crate) fn finish(mut self, seq: u32, extra_flags: u16) -> Vec<u8> {
        while !self.nests.is_empty() {
            self.end_nest();
        }
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[4..6].copy_from_slice(&self.kind.to_ne_bytes());
        self.buf[6..8].copy_from_slice(&(self.flags | extra_flags).to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// Walks the attributes in a buffer, yielding `(type without flags, value)`.
#[derive(Debug)]
pub(crate) struct AttrIter<'a> {
    data: &'a [u8],
}

impl<'a> AttrIter<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.len() < NLA_HDRLEN {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([self.data[0], self.data[1]]));
        let kind = u16::from_ne_bytes([self.data[2], self.data[3]]) & 0x3fff;
        if len < NLA_HDRLEN || len > self.data.len() {
            self.data = &[];
            return None;
        }
        let value = &self.data[NLA_HDRLEN..len];
        self.data = &self.data[align4(len).min(self.data.len())..];
        Some((kind, value))
    }
}

/// Reads a NUL-terminated string attribute value.
pub(crate) fn parse_str(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// Reads a native-endian u32 attribute value.
pub(crate) fn parse_u32(value: &[u8]) -> Option<u32> {
    value.get(0..4)?.try_into().ok().map(u32::from_ne_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_round_trip() {
        let mut m = MsgBuilder::new(16, 0).header(&[1, 2, 3]);
        m.attr_str(3, "eth0");
        m.begin_nest(18);
        m.attr_u32(1, 42);
        m.end_nest();
        let bytes = m.finish(9, 1);
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        let attrs: Vec<_> = AttrIter::new(&bytes[NLMSG_HDRLEN + 4..]).collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(parse_str(attrs[0].1), "eth0");
        assert_eq!(attrs[1].0, 18);
        let inner: Vec<_> = AttrIter::new(attrs[1].1).collect();
        assert_eq!(parse_u32(inner[0].1), Some(42));
    }

    #[test]
    fn truncated_attribute_stops_iteration() {
        let data = [8u8, 0, 1, 0, 1];
        assert_eq!(AttrIter::new(&data).count(), 0);
    }
}
