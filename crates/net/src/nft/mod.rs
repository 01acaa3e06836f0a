//! berth's nftables table, built as nfnetlink batch messages (no `nft` process).
//!
//! The table's rules are regenerated from berth's state on every change, in one atomic
//! batch: ensure table and chains exist, flush every chain, add every rule. State on
//! disk is the single source of truth, so a removed container's rules disappear with its
//! record and a crashed command leaves no orphan rule behind. Base chains are never
//! deleted on this path: deleting one unregisters its hook, which waits for an RCU grace
//! period (about 10 ms here) — too slow for every container start.
//!
//! Layout of table `ip <name>` (base chains only jump to regular ones):
//! - `prerouting` (nat, dstnat), `output` (nat, -100): `fib daddr type local jump publish`
//! - `publish`: one DNAT rule per published port
//! - `postrouting` (nat, srcnat): `jump masq`
//! - `masq`: masquerade per non-internal subnet leaving its bridge, and masquerade of
//!   loopback sources entering a bridge (published ports reached from 127.0.0.1; needs
//!   `route_localnet=1` on the bridge)
//! - `forward` (filter, 0): `jump isolate`
//! - `isolate`: drops between different berth bridges; internal bridges talk to nothing
//!   but themselves

pub(crate) mod expr;

use std::net::Ipv4Addr;

use nix::sys::socket::SockProtocol;

use crate::netlink::{
    MsgBuilder, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkError, Socket,
    check_ack,
};
use crate::subnet::Subnet;
use expr::{CmpOp, Expr, L4};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFPROTO_IPV4: u8 = 2;
const NLMSG_ERROR: u16 = 2;

const HOOK_PREROUTING: u32 = 0;
const HOOK_FORWARD: u32 = 2;
const HOOK_OUTPUT: u32 = 3;
const HOOK_POSTROUTING: u32 = 4;

/// One network as the ruleset sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct NetRules {
    pub(crate) bridge: String,
    pub(crate) subnet: Subnet,
    pub(crate) internal: bool,
}

/// One published port: `[host_ip:]host_port/proto -> container_ip:container_port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PortRule {
    pub(crate) host_ip: Option<Ipv4Addr>,
    pub(crate) host_port: u16,
    pub(crate) proto: L4,
    pub(crate) container_ip: Ipv4Addr,
    pub(crate) container_port: u16,
}

/// The whole content of berth's table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Ruleset {
    pub(crate) networks: Vec<NetRules>,
    pub(crate) ports: Vec<PortRule>,
}

struct ChainDef {
    name: &'static str,
    hook: Option<(u32, i32, &'static str)>,
}

/// Regular chains first, so the base chains' jumps find their targets.
const CHAINS: &[ChainDef] = &[
    ChainDef {
        name: "publish",
        hook: None,
    },
    ChainDef {
        name: "masq",
        hook: None,
    },
    ChainDef {
        name: "isolate",
        hook: None,
    },
    ChainDef {
        name: "prerouting",
        hook: Some((HOOK_PREROUTING, -100, "nat")),
    },
    ChainDef {
        name: "output",
        hook: Some((HOOK_OUTPUT, -100, "nat")),
    },
    ChainDef {
        name: "postrouting",
        hook: Some((HOOK_POSTROUTING, 100, "nat")),
    },
    ChainDef {
        name: "forward",
        hook: Some((HOOK_FORWARD, 0, "filter")),
    },
];

fn jump(chain: &str) -> Expr {
    Expr::Verdict {
        code: expr::VERDICT_JUMP,
        chain: Some(chain.into()),
    }
}

impl Ruleset {
    /// The rules of every chain, as `(chain, expressions)` in order.
    pub(crate) fn rules(&self) -> Vec<(&'static str, Vec<Expr>)> {
        let mut out = Vec::new();
        for chain in ["prerouting", "output"] {
            let mut r = expr::daddr_is_local();
            r.push(jump("publish"));
            out.push((chain, r));
        }
        out.push(("postrouting", vec![jump("masq")]));
        out.push(("forward", vec![jump("isolate")]));
        for p in &self.ports {
            let mut r = p.host_ip.map(expr::daddr_is).unwrap_or_default();
            r.extend(expr::l4_dport(p.proto, p.host_port));
            r.extend(expr::dnat_to(p.container_ip, p.container_port));
            out.push(("publish", r));
        }
        let loopback = Subnet::new(Ipv4Addr::new(127, 0, 0, 0), 8).expect("127/8 is a network");
        let drop = Expr::Verdict {
            code: expr::VERDICT_DROP,
            chain: None,
        };
        for n in &self.networks {
            if !n.internal {
                let mut r = expr::saddr_in(&n.subnet, CmpOp::Eq);
                r.extend(expr::oifname(&n.bridge, CmpOp::Neq));
                r.push(Expr::Masquerade);
                out.push(("masq", r));
            }
            // Hairpin: a container reaching a published port of its own network through
            // a host address must see the answer come from that address, not the peer.
            let mut r = expr::saddr_in(&n.subnet, CmpOp::Eq);
            r.extend(expr::oifname(&n.bridge, CmpOp::Eq));
            r.extend(expr::ct_status_dnat());
            r.push(Expr::Masquerade);
            out.push(("masq", r));
            let mut r = expr::oifname(&n.bridge, CmpOp::Eq);
            r.extend(expr::saddr_in(&loopback, CmpOp::Eq));
            r.push(Expr::Masquerade);
            out.push(("masq", r));
            out.extend(self.isolation(n, &drop));
        }
        out
    }

    fn isolation(&self, n: &NetRules, drop: &Expr) -> Vec<(&'static str, Vec<Expr>)> {
        let mut out = Vec::new();
        if n.internal {
            let mut leaving = expr::iifname(&n.bridge, CmpOp::Eq);
            leaving.extend(expr::oifname(&n.bridge, CmpOp::Neq));
            leaving.push(drop.clone());
            let mut entering = expr::oifname(&n.bridge, CmpOp::Eq);
            entering.extend(expr::iifname(&n.bridge, CmpOp::Neq));
            entering.push(drop.clone());
            out.push(("isolate", leaving));
            out.push(("isolate", entering));
            return out;
        }
        for other in self
            .networks
            .iter()
            .filter(|o| o.bridge != n.bridge && !o.internal)
        {
            let mut r = expr::iifname(&n.bridge, CmpOp::Eq);
            r.extend(expr::oifname(&other.bridge, CmpOp::Eq));
            r.push(drop.clone());
            out.push(("isolate", r));
        }
        out
    }
}

fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

fn nft_msg(kind: u16, flags: u16) -> MsgBuilder {
    MsgBuilder::new((NFNL_SUBSYS_NFTABLES << 8) | kind, flags).header(&nfgenmsg(NFPROTO_IPV4, 0))
}

fn new_table(table: &str) -> MsgBuilder {
    let mut m = nft_msg(NFT_MSG_NEWTABLE, NLM_F_CREATE);
    m.attr_str(1, table);
    m
}

fn del_table(table: &str) -> MsgBuilder {
    let mut m = nft_msg(NFT_MSG_DELTABLE, 0);
    m.attr_str(1, table);
    m
}

fn new_chain(table: &str, def: &ChainDef) -> MsgBuilder {
    let mut m = nft_msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
    m.attr_str(1, table).attr_str(3, def.name);
    if let Some((hook, prio, kind)) = def.hook {
        m.begin_nest(4);
        m.attr_be32(1, hook).attr(2, &prio.to_be_bytes());
        m.end_nest();
        m.attr_be32(5, 1).attr_str(7, kind);
    }
    m
}

fn new_rule(table: &str, chain: &str, exprs: &[Expr]) -> MsgBuilder {
    let mut m = nft_msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
    m.attr_str(1, table).attr_str(2, chain);
    m.begin_nest(4);
    for e in exprs {
        e.encode(&mut m);
    }
    m.end_nest();
    m
}

/// The messages that atomically replace table `table` with `ruleset`.
pub(crate) fn replace_batch(table: &str, ruleset: &Ruleset) -> Vec<MsgBuilder> {
    let mut msgs = vec![new_table(table), del_table(table), new_table(table)];
    msgs.extend(CHAINS.iter().map(|c| new_chain(table, c)));
    for (chain, exprs) in ruleset.rules() {
        msgs.push(new_rule(table, chain, &exprs));
    }
    msgs
}

/// The messages that flush and refill table `table` with `ruleset`, creating the
/// table and chains if missing. Never deletes a base chain.
pub(crate) fn sync_batch(table: &str, ruleset: &Ruleset) -> Vec<MsgBuilder> {
    let mut msgs = vec![new_table(table)];
    msgs.extend(CHAINS.iter().map(|c| new_chain(table, c)));
    msgs.extend(CHAINS.iter().map(|c| flush_chain(table, c.name)));
    for (chain, exprs) in ruleset.rules() {
        msgs.push(new_rule(table, chain, &exprs));
    }
    msgs
}

/// A rule deletion naming only the chain: deletes every rule in it.
fn flush_chain(table: &str, chain: &str) -> MsgBuilder {
    let mut m = nft_msg(NFT_MSG_DELRULE, 0);
    m.attr_str(1, table).attr_str(2, chain);
    m
}

/// The messages that delete table `table` (succeeds when it does not exist).
pub(crate) fn delete_batch(table: &str) -> Vec<MsgBuilder> {
    vec![new_table(table), del_table(table)]
}

/// Sends `msgs` as one nfnetlink transaction and checks every acknowledgement. Returns
/// the socket: closing it waits for the kernel's release of the transaction (an RCU grace
/// period), so callers may close it later, off the hot path.
pub(crate) fn commit(msgs: Vec<MsgBuilder>, what: &str) -> Result<Socket, NetlinkError> {
    let mut sock = Socket::open(SockProtocol::NetlinkNetFilter)?;
    let begin_seq = sock.next_seq();
    let begin = MsgBuilder::new(NFNL_MSG_BATCH_BEGIN, 0).header(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
    let mut bytes = begin.finish(begin_seq, NLM_F_REQUEST);
    let count = msgs.len();
    for m in msgs {
        let seq = sock.next_seq();
        bytes.extend(m.finish(seq, NLM_F_REQUEST | NLM_F_ACK));
    }
    let end = MsgBuilder::new(NFNL_MSG_BATCH_END, 0).header(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
    let end_seq = sock.next_seq();
    bytes.extend(end.finish(end_seq, NLM_F_REQUEST));
    sock.send_raw(&bytes)?;
    let (mut answered, mut first_err) = (0, None);
    while answered < count {
        for answer in sock.recv_messages(what)? {
            if answer.kind != NLMSG_ERROR {
                continue;
            }
            let result = check_ack(&answer.payload, what);
            if answer.seq == begin_seq || answer.seq == end_seq {
                return result.map(|()| sock);
            }
            answered += 1;
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(sock), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(bridge: &str, subnet: &str, internal: bool) -> NetRules {
        NetRules {
            bridge: bridge.into(),
            subnet: subnet.parse().unwrap(),
            internal,
        }
    }

    #[test]
    fn two_networks_isolate_each_other() {
        let rs = Ruleset {
            networks: vec![
                net("a0", "10.1.0.0/24", false),
                net("b0", "10.2.0.0/24", false),
            ],
            ports: vec![],
        };
        let forward: Vec<_> = rs
            .rules()
            .into_iter()
            .filter(|(c, _)| *c == "isolate")
            .collect();
        assert_eq!(forward.len(), 2);
        let post = rs.rules().into_iter().filter(|(c, _)| *c == "masq").count();
        assert_eq!(post, 6);
    }

    #[test]
    fn internal_network_gets_no_masquerade_and_two_drops() {
        let rs = Ruleset {
            networks: vec![net("i0", "10.3.0.0/24", true)],
            ports: vec![],
        };
        let rules = rs.rules();
        assert_eq!(rules.iter().filter(|(c, _)| *c == "isolate").count(), 2);
        assert_eq!(rules.iter().filter(|(c, _)| *c == "masq").count(), 2);
    }

    #[test]
    fn one_dnat_rule_per_port() {
        let port = PortRule {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 8080,
            proto: L4::Tcp,
            container_ip: Ipv4Addr::new(10, 1, 0, 2),
            container_port: 80,
        };
        let rs = Ruleset {
            networks: vec![],
            ports: vec![port],
        };
        let publish: Vec<_> = rs
            .rules()
            .into_iter()
            .filter(|(c, _)| *c == "publish")
            .collect();
        assert_eq!(publish.len(), 1);
        assert!(matches!(publish[0].1.last(), Some(Expr::Dnat { .. })));
        let rules = rs.rules().len();
        assert_eq!(replace_batch("t", &rs).len(), 3 + CHAINS.len() + rules);
        assert_eq!(sync_batch("t", &rs).len(), 1 + 2 * CHAINS.len() + rules);
    }
}
