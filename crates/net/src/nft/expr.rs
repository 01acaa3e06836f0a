//! nftables rule expressions as data, and their netlink encoding (`NFTA_RULE_EXPRESSIONS`).
//! Matchers such as "ip saddr in subnet" are short lists of these primitive expressions,
//! the same ones `nft` itself compiles to.

use std::net::Ipv4Addr;

use crate::netlink::MsgBuilder;
use crate::subnet::Subnet;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// 16-byte data registers 1 and 2 (register 0 is the verdict).
pub(crate) const REG_1: u32 = 1;
pub(crate) const REG_2: u32 = 2;

const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_L4PROTO: u32 = 16;
const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;
const NAT_DNAT: u32 = 1;
const NFPROTO_IPV4: u32 = 2;
const FIB_RESULT_ADDRTYPE: u32 = 3;
const FIB_F_DADDR: u32 = 1 << 1;
const RTN_LOCAL: u32 = 2;
const CT_STATUS: u32 = 2;
/// `IPS_DST_NAT` of the conntrack status word.
const IPS_DST_NAT: u32 = 1 << 5;
const IFNAMSIZ: usize = 16;

/// Verdict codes as the kernel spells them.
pub(crate) const VERDICT_DROP: i32 = 0;
pub(crate) const VERDICT_JUMP: i32 = -3;

/// A comparison operator of the `cmp` expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq = 0,
    Neq = 1,
}

/// One primitive nftables expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Meta {
        key: u32,
        dreg: u32,
    },
    Cmp {
        sreg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
    },
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    Verdict {
        code: i32,
        chain: Option<String>,
    },
    Dnat {
        addr_reg: u32,
        proto_reg: u32,
    },
    Masquerade,
    FibDaddrType {
        dreg: u32,
    },
    CtStatus {
        dreg: u32,
    },
}

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum L4 {
    Tcp = 6,
    Udp = 17,
}

fn ifname_bytes(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(IFNAMSIZ, 0);
    v
}

/// `iifname [!=] name`
pub(crate) fn iifname(name: &str, op: CmpOp) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: META_IIFNAME,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op,
            data: ifname_bytes(name),
        },
    ]
}

/// `oifname [!=] name`
pub(crate) fn oifname(name: &str, op: CmpOp) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: META_OIFNAME,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op,
            data: ifname_bytes(name),
        },
    ]
}

/// `ip saddr SUBNET` (offset 12) or `ip daddr SUBNET` (offset 16).
fn ip_in(offset: u32, subnet: &Subnet, op: CmpOp) -> Vec<Expr> {
    let mut v = vec![Expr::Payload {
        base: PAYLOAD_NETWORK,
        offset,
        len: 4,
        dreg: REG_1,
    }];
    if subnet.prefix() < 32 {
        v.push(Expr::Bitwise {
            reg: REG_1,
            mask: subnet.mask().to_be_bytes().to_vec(),
        });
    }
    v.push(Expr::Cmp {
        sreg: REG_1,
        op,
        data: subnet.addr().octets().to_vec(),
    });
    v
}

/// `ip saddr [!=] SUBNET`
pub(crate) fn saddr_in(subnet: &Subnet, op: CmpOp) -> Vec<Expr> {
    ip_in(12, subnet, op)
}

/// `ip daddr == ADDR`
pub(crate) fn daddr_is(addr: Ipv4Addr) -> Vec<Expr> {
    let host = Subnet::new(addr, 32).expect("a /32 never has host bits");
    ip_in(16, &host, CmpOp::Eq)
}

/// `ct status dnat`: the connection's destination was rewritten (a published port).
pub(crate) fn ct_status_dnat() -> Vec<Expr> {
    vec![
        Expr::CtStatus { dreg: REG_1 },
        Expr::Bitwise {
            reg: REG_1,
            mask: IPS_DST_NAT.to_ne_bytes().to_vec(),
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Neq,
            data: 0u32.to_ne_bytes().to_vec(),
        },
    ]
}

/// `fib daddr type local`
pub(crate) fn daddr_is_local() -> Vec<Expr> {
    vec![
        Expr::FibDaddrType { dreg: REG_1 },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: RTN_LOCAL.to_ne_bytes().to_vec(),
        },
    ]
}

/// `meta l4proto P  P dport PORT`
pub(crate) fn l4_dport(proto: L4, port: u16) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: META_L4PROTO,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![proto as u8],
        },
        Expr::Payload {
            base: PAYLOAD_TRANSPORT,
            offset: 2,
            len: 2,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: port.to_be_bytes().to_vec(),
        },
    ]
}

/// `dnat ip to ADDR:PORT`
pub(crate) fn dnat_to(addr: Ipv4Addr, port: u16) -> Vec<Expr> {
    vec![
        Expr::Immediate {
            dreg: REG_1,
            data: addr.octets().to_vec(),
        },
        Expr::Immediate {
            dreg: REG_2,
            data: port.to_be_bytes().to_vec(),
        },
        Expr::Dnat {
            addr_reg: REG_1,
            proto_reg: REG_2,
        },
    ]
}

fn data_value(m: &mut MsgBuilder, kind: u16, bytes: &[u8]) {
    m.begin_nest(kind);
    m.attr(NFTA_DATA_VALUE, bytes);
    m.end_nest();
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Payload { .. } => "payload",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Immediate { .. } | Expr::Verdict { .. } => "immediate",
            Expr::Dnat { .. } => "nat",
            Expr::Masquerade => "masq",
            Expr::FibDaddrType { .. } => "fib",
            Expr::CtStatus { .. } => "ct",
        }
    }

    /// Appends this expression as one `NFTA_LIST_ELEM`.
    pub(crate) fn encode(&self, m: &mut MsgBuilder) {
        m.begin_nest(NFTA_LIST_ELEM);
        m.attr_str(NFTA_EXPR_NAME, self.name());
        m.begin_nest(NFTA_EXPR_DATA);
        self.encode_data(m);
        m.end_nest();
        m.end_nest();
    }

    fn encode_data(&self, m: &mut MsgBuilder) {
        match self {
            Expr::Meta { key, dreg } => {
                m.attr_be32(2, *key).attr_be32(1, *dreg);
            }
            Expr::Cmp { sreg, op, data } => {
                m.attr_be32(1, *sreg).attr_be32(2, *op as u32);
                data_value(m, 3, data);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                m.attr_be32(1, *dreg).attr_be32(2, *base);
                m.attr_be32(3, *offset).attr_be32(4, *len);
            }
            Expr::Bitwise { reg, mask } => {
                let len = u32::try_from(mask.len()).unwrap_or(0);
                m.attr_be32(1, *reg).attr_be32(2, *reg).attr_be32(3, len);
                data_value(m, 4, mask);
                data_value(m, 5, &vec![0; mask.len()]);
            }
            Expr::Immediate { dreg, data } => {
                m.attr_be32(1, *dreg);
                data_value(m, 2, data);
            }
            Expr::Verdict { code, chain } => {
                m.attr_be32(1, 0);
                m.begin_nest(2);
                m.begin_nest(NFTA_DATA_VERDICT);
                m.attr(NFTA_VERDICT_CODE, &code.to_be_bytes());
                if let Some(c) = chain {
                    m.attr_str(NFTA_VERDICT_CHAIN, c);
                }
                m.end_nest();
                m.end_nest();
            }
            Expr::Dnat {
                addr_reg,
                proto_reg,
            } => {
                m.attr_be32(1, NAT_DNAT).attr_be32(2, NFPROTO_IPV4);
                m.attr_be32(3, *addr_reg).attr_be32(5, *proto_reg);
            }
            Expr::Masquerade => {}
            Expr::FibDaddrType { dreg } => {
                m.attr_be32(1, *dreg).attr_be32(2, FIB_RESULT_ADDRTYPE);
                m.attr_be32(3, FIB_F_DADDR);
            }
            Expr::CtStatus { dreg } => {
                m.attr_be32(1, *dreg).attr_be32(2, CT_STATUS);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_match_masks_unless_host() {
        let s: Subnet = "10.9.0.0/16".parse().unwrap();
        let e = saddr_in(&s, CmpOp::Eq);
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[1],
            Expr::Bitwise {
                reg: REG_1,
                mask: vec![255, 255, 0, 0]
            }
        );
        assert_eq!(daddr_is(Ipv4Addr::LOCALHOST).len(), 2);
    }

    #[test]
    fn interface_names_are_padded() {
        let e = oifname("br0", CmpOp::Neq);
        match &e[1] {
            Expr::Cmp { data, op, .. } => {
                assert_eq!(data.len(), IFNAMSIZ);
                assert_eq!(&data[..4], b"br0\0");
                assert_eq!(*op, CmpOp::Neq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ports_are_big_endian() {
        let e = l4_dport(L4::Udp, 0x1f90);
        assert_eq!(
            e[1],
            Expr::Cmp {
                sreg: REG_1,
                op: CmpOp::Eq,
                data: vec![17]
            }
        );
        assert_eq!(
            e[3],
            Expr::Cmp {
                sreg: REG_1,
                op: CmpOp::Eq,
                data: vec![0x1f, 0x90]
            }
        );
    }
}
