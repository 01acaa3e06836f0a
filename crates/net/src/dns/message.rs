//! Just enough of the DNS wire format (RFC 1035) to answer A queries for container names
//! and to recognise what must be forwarded. Every length is checked against the packet.

use std::net::Ipv4Addr;

pub(crate) const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const HEADER_LEN: usize = 12;
const MAX_NAME: usize = 255;

pub(crate) const RCODE_FORMERR: u8 = 1;
pub(crate) const RCODE_SERVFAIL: u8 = 2;
pub(crate) const RCODE_NOTIMP: u8 = 4;
pub(crate) const RCODE_REFUSED: u8 = 5;
/// The classic UDP answer limit (no EDNS0 here).
const MAX_UDP_ANSWER: usize = 512;
const A_RECORD_LEN: usize = 16;
const FLAG_TC: u16 = 0x0200;

/// The single question of a query, with the header fields an answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub(crate) id: u16,
    /// The flags word of the query (opcode, RD).
    pub(crate) flags: u16,
    /// The name, lowercase, without the trailing dot.
    pub(crate) name: String,
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
    /// The end of the question section in the packet.
    question_end: usize,
}

/// Why a packet is not a query this responder handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryProblem {
    /// Too short, bad labels, or not exactly one question: FORMERR (if an id exists).
    Malformed,
    /// A response, or an opcode other than QUERY: NOTIMP.
    Unsupported,
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

/// Parses a query with exactly one uncompressed question.
pub(crate) fn parse_query(p: &[u8]) -> Result<Query, QueryProblem> {
    let id = be16(p, 0).ok_or(QueryProblem::Malformed)?;
    let flags = be16(p, 2).ok_or(QueryProblem::Malformed)?;
    let qdcount = be16(p, 4).ok_or(QueryProblem::Malformed)?;
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 {
        return Err(QueryProblem::Unsupported);
    }
    if qdcount != 1 {
        return Err(QueryProblem::Malformed);
    }
    let mut at = HEADER_LEN;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = usize::from(*p.get(at).ok_or(QueryProblem::Malformed)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers (and the reserved 01/10 forms) never start a question.
        if len > 63 {
            return Err(QueryProblem::Malformed);
        }
        let label = p.get(at..at + len).ok_or(QueryProblem::Malformed)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
        if at - HEADER_LEN > MAX_NAME {
            return Err(QueryProblem::Malformed);
        }
    }
    let qtype = be16(p, at).ok_or(QueryProblem::Malformed)?;
    let qclass = be16(p, at + 2).ok_or(QueryProblem::Malformed)?;
    Ok(Query {
        id,
        flags,
        name: labels.join("."),
        qtype,
        qclass,
        question_end: at + 4,
    })
}

/// The id of a packet, if it has one (for error answers to malformed queries).
pub(crate) fn packet_id(p: &[u8]) -> Option<u16> {
    be16(p, 0)
}

fn header(id: u16, query_flags: u16, rcode: u8, qd: u16, an: u16) -> Vec<u8> {
    // QR, the query's opcode and RD, AA (we are authoritative for container names), RA.
    let flags = 0x8000 | (query_flags & 0x7900) | 0x0400 | 0x0080 | u16::from(rcode & 0xf);
    let mut h = Vec::with_capacity(HEADER_LEN);
    for v in [id, flags, qd, an, 0, 0] {
        h.extend_from_slice(&v.to_be_bytes());
    }
    h
}

/// An answer to `q` (from packet `packet`) with A records `ips`: NOERROR with no records
/// for other types of a known name. Records beyond 512 bytes are cut and TC is set.
pub(crate) fn answer(packet: &[u8], q: &Query, ips: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let wanted: &[Ipv4Addr] = if q.qtype == TYPE_A && q.qclass == CLASS_IN {
        ips
    } else {
        &[]
    };
    let room = MAX_UDP_ANSWER.saturating_sub(q.question_end) / A_RECORD_LEN;
    let fitting = &wanted[..wanted.len().min(room)];
    let count = u16::try_from(fitting.len()).unwrap_or(0);
    let mut out = header(q.id, q.flags, 0, 1, count);
    if fitting.len() < wanted.len() {
        let flags = be16(&out, 2).unwrap_or(0) | FLAG_TC;
        out[2..4].copy_from_slice(&flags.to_be_bytes());
    }
    out.extend_from_slice(&packet[HEADER_LEN..q.question_end]);
    for ip in fitting {
        // A pointer to the question's name at offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// An error answer with no question section.
pub(crate) fn error_answer(id: u16, query_flags: u16, rcode: u8) -> Vec<u8> {
    header(id, query_flags, rcode, 0, 0)
}

#[cfg(test)]
pub(crate) fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    for v in [id, 0x0100, 1, 0, 0, 0] {
        q.extend_from_slice(&v.to_be_bytes());
    }
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_query_and_answers_it() {
        let packet = build_query(0x1234, "Web.", TYPE_A);
        let q = parse_query(&packet).unwrap();
        assert_eq!((q.id, q.name.as_str(), q.qtype), (0x1234, "web", TYPE_A));
        let ip: Ipv4Addr = "10.1.0.2".parse().unwrap();
        let a = answer(&packet, &q, &[ip], 10);
        assert_eq!(&a[0..2], &[0x12, 0x34]);
        assert_eq!(a[2] & 0x80, 0x80, "QR set");
        assert_eq!(a[2] & 0x01, 0x01, "RD copied");
        assert_eq!(be16(&a, 6), Some(1), "one answer");
        assert_eq!(&a[a.len() - 4..], &ip.octets());
    }

    #[test]
    fn long_answers_are_truncated_with_tc() {
        let packet = build_query(2, "many", TYPE_A);
        let q = parse_query(&packet).unwrap();
        let ips: Vec<Ipv4Addr> = (0..100u8).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let a = answer(&packet, &q, &ips, 10);
        assert!(a.len() <= 512);
        assert_eq!(a[2] & 0x02, 0x02, "TC set");
        let count = usize::from(be16(&a, 6).unwrap());
        assert_eq!(a.len(), packet.len() + count * 16);
        let few = answer(&packet, &q, &ips[..3], 10);
        assert_eq!(few[2] & 0x02, 0);
    }

    #[test]
    fn other_types_get_no_records() {
        let packet = build_query(1, "web", 28);
        let q = parse_query(&packet).unwrap();
        let a = answer(&packet, &q, &["10.0.0.2".parse().unwrap()], 10);
        assert_eq!(be16(&a, 6), Some(0));
        assert_eq!(a[3] & 0xf, 0);
    }

    #[test]
    fn rejects_bad_packets() {
        assert_eq!(parse_query(&[0; 5]), Err(QueryProblem::Malformed));
        let mut p = build_query(1, "web", TYPE_A);
        p[12] = 0xc0;
        assert_eq!(parse_query(&p), Err(QueryProblem::Malformed));
        let mut p = build_query(1, "web", TYPE_A);
        p[2] |= 0x80;
        assert_eq!(parse_query(&p), Err(QueryProblem::Unsupported));
        let mut p = build_query(1, "web", TYPE_A);
        p.truncate(p.len() - 1);
        assert_eq!(parse_query(&p), Err(QueryProblem::Malformed));
        let e = error_answer(7, 0x0100, RCODE_FORMERR);
        assert_eq!((e.len(), e[3] & 0xf), (12, RCODE_FORMERR));
    }
}
