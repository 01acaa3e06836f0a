//! Keeping berth's nftables table in step with the records.
//!
//! Two measured costs shape this module. Every nf_tables transaction is released by the
//! kernel after an RCU grace period, and closing an nfnetlink socket waits for pending
//! releases (about 5-10 ms on the 2-core build VM). So:
//! - a change that leaves the ruleset as it was (a container without published ports)
//!   commits nothing: the fingerprint of the last committed ruleset is kept in the run
//!   dir, and [`NetStore::recover`] always commits;
//! - the socket of a commit is not closed at once but parked in [`DeferredClose`], and
//!   closed when the store is dropped (or before a later commit once a few are parked),
//!   by which time the grace period has usually passed. Any nfnetlink close waits for
//!   every pending release, so a close never directly follows a commit.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::ipam::fnv1a;
use crate::netlink::Socket;
use crate::nft::{self, NetRules, PortRule, Ruleset, expr::L4};
use crate::record::{self, Attachment, Protocol};
use crate::store::{NetError, NetStore};

/// How many committed sockets may wait for their close.
const PARKED_MAX: usize = 4;

/// nfnetlink sockets whose close is deferred (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct DeferredClose(Mutex<VecDeque<Socket>>);

impl DeferredClose {
    /// Closes the oldest parked sockets so that `PARKED_MAX - 1` remain. Called before a
    /// commit: a close right after one would wait for that very commit's release.
    fn trim(&self) {
        // A poisoned lock only means another thread panicked while parking; the queue
        // of sockets is still valid.
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while q.len() >= PARKED_MAX {
            q.pop_front();
        }
    }

    fn park(&self, sock: Socket) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(sock);
    }
}

/// Whether a sync may skip an unchanged ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncMode {
    /// Commit only when the ruleset differs from the last one committed.
    IfChanged,
    /// Commit in any case (recovery, or the table may have been removed by hand).
    Always,
}

fn port_rule(a: &Attachment, p: &record::PortMapping) -> PortRule {
    PortRule {
        host_ip: p.host_ip,
        host_port: p.host_port,
        proto: match p.protocol {
            Protocol::Tcp => L4::Tcp,
            Protocol::Udp => L4::Udp,
        },
        container_ip: a.ip,
        container_port: p.container_port,
    }
}

impl NetStore {
    /// The ruleset the records call for.
    fn ruleset(&self) -> Result<Ruleset, NetError> {
        let mut ruleset = Ruleset::default();
        for n in self.list()? {
            for a in record::read_all::<Attachment>(&self.layout.endpoints_dir(&n.name))? {
                ruleset
                    .ports
                    .extend(a.ports.iter().map(|p| port_rule(&a, p)));
            }
            ruleset.networks.push(NetRules {
                bridge: n.bridge,
                subnet: n.subnet,
                internal: n.internal,
            });
        }
        Ok(ruleset)
    }

    /// Brings berth's nftables table in line with the records (must hold the lock).
    pub(crate) fn sync_firewall(&self, mode: SyncMode) -> Result<(), NetError> {
        let ruleset = self.ruleset()?;
        let table = &self.config.nft_table;
        let stamp_file = self.layout.firewall_stamp(table);
        let stamp = format!("{:016x}", fnv1a(&[table, &format!("{ruleset:?}")]));
        if mode == SyncMode::IfChanged
            && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp)
        {
            return Ok(());
        }
        // The stamp goes first: if the commit fails, the next sync must not skip.
        record::remove_file(&stamp_file)?;
        self.closing.trim();
        let what = format!("sync table `{table}`");
        let sock = match self
            .kernel
            .commit_nft(nft::sync_batch(table, &ruleset), &what)
        {
            Ok(sock) => sock,
            // A table of another layout (an older berth) cannot be refilled in place:
            // replace it whole, paying the hook unregistration once.
            Err(_) => self.kernel.commit_nft(
                nft::replace_batch(table, &ruleset),
                &format!("replace table `{table}`"),
            )?,
        };
        if let Some(sock) = sock {
            self.closing.park(sock);
        }
        std::fs::write(&stamp_file, stamp).map_err(|source| record::RecordError::Io {
            path: stamp_file,
            source,
        })?;
        Ok(())
    }

    /// Deletes berth's nftables table (uninstall, tests).
    pub fn delete_firewall(&self) -> Result<(), NetError> {
        let _lock = self.lock()?;
        let table = &self.config.nft_table;
        record::remove_file(&self.layout.firewall_stamp(table))?;
        let what = format!("delete table `{table}`");
        self.kernel.commit_nft(nft::delete_batch(table), &what)?;
        Ok(())
    }
}
