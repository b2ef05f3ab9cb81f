//! Simulated clients and the history they record.
//!
//! Each client has at most one operation outstanding, like a caller blocked on
//! an RPC. What ends up in the history follows what the client could know:
//!
//! - a write answered with its output, or a read answered with a value, is a
//!   completed operation;
//! - `NotLeader` (and a refused connection to a crashed server) means the
//!   server never proposed it: it is left out;
//! - any other failure (`Dropped`: leadership changed before it applied), a
//!   server crashing under it, or the client giving up leaves a write's fate
//!   unknown. Reads that fail are left out: they cannot have changed anything.
//!
//! Unknown writes are settled against the [`Ledger`] before checking: one that
//! no server ever applied never took effect and is left out; one that was
//! applied took effect by the time it was first applied (its commit came
//! earlier still), output unseen. This is stricter than treating them as
//! "any time or never", and sound: in raft a write takes effect at its commit,
//! and reads only observe applied state.
//!
//! [`Ledger`]: super::kv::Ledger

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::kv::{KeyOp, KeyResult, Ledger, Register, Write, WriteOutput};
use super::linearizability::{self, Operation, Outcome};
use crate::error::ProposeError;
use crate::machine::Applied;

/// What a client asks of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Request {
    Write(Write),
    /// A linearizable read: ReadIndex, then the value from that server.
    Read(u8),
}

impl Request {
    pub(super) fn key(&self) -> u8 {
        match self {
            Request::Write(w) => w.key(),
            Request::Read(key) => *key,
        }
    }
}

/// Where the server's answer arrives.
pub(super) enum Reply {
    Write(oneshot::Receiver<Result<Applied<WriteOutput>, ProposeError>>),
    Read(oneshot::Receiver<Result<u64, ProposeError>>),
}

/// An operation a client is waiting on.
pub(super) struct PendingOp {
    pub(super) op_id: u64,
    pub(super) server: u64,
    pub(super) request: Request,
    /// History stamp of the call.
    pub(super) call: u64,
    /// Virtual time of the call (for the client's timeout).
    pub(super) issued_at: u64,
    pub(super) reply: Reply,
    /// The server's term when the call arrived, if it was leading then.
    pub(super) leader_term: Option<u64>,
    /// It was leading but had not yet committed an entry of its term.
    pub(super) fresh_leader: bool,
}

/// One simulated client.
#[derive(Default)]
pub(super) struct Client {
    /// The server it believes leads (from the last answer), tried first.
    pub(super) leader_hint: Option<u64>,
    pub(super) pending: Option<PendingOp>,
}

/// How an operation in the history ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    Returned { at: u64, output: KeyResult },
    Unknown,
}

/// One operation in the history.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    pub(super) op_id: u64,
    pub(super) client: usize,
    pub(super) key: u8,
    pub(super) input: KeyOp,
    pub(super) call: u64,
    pub(super) ended: Ended,
}

/// What checking a history found.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct CheckSummary {
    /// Operations given to the checker (all keys).
    pub(super) ops: usize,
    /// Unknown writes the ledger showed took effect.
    pub(super) unknown_applied: usize,
    /// Unknown writes the ledger showed never took effect.
    pub(super) unknown_discarded: usize,
    /// Search states visited, all keys.
    pub(super) explored: u64,
}

/// One key's operations, each with the record it came from.
type KeyHistory<'a> = Vec<(Operation<KeyOp, KeyResult>, &'a Recorded)>;

/// Search states allowed per key before the checker gives up (a failure).
const CHECK_BUDGET: u64 = 5_000_000;

/// Check `history` key by key; `Err` explains the first violation.
pub(super) fn check(history: &[Recorded], ledger: &Ledger) -> Result<CheckSummary, String> {
    let mut summary = CheckSummary::default();
    let mut by_key: BTreeMap<u8, KeyHistory<'_>> = BTreeMap::new();
    for rec in history {
        let outcome = match rec.ended {
            Ended::Returned { at, output } => Outcome::Returned { at, output },
            Ended::Unknown => match ledger.applied_at(rec.op_id) {
                Some(by) => {
                    summary.unknown_applied += 1;
                    Outcome::TookEffect { by }
                }
                None => {
                    summary.unknown_discarded += 1;
                    continue;
                }
            },
        };
        by_key.entry(rec.key).or_default().push((
            Operation {
                call: rec.call,
                input: rec.input,
                outcome,
            },
            rec,
        ));
    }
    for (key, entries) in by_key {
        let ops: Vec<_> = entries.iter().map(|(op, _)| op.clone()).collect();
        summary.ops += ops.len();
        match linearizability::check(&Register, &ops, CHECK_BUDGET) {
            Ok(checked) => summary.explored += checked.explored,
            Err(err) => {
                let clients: Vec<String> = entries
                    .iter()
                    .enumerate()
                    .map(|(i, (_, rec))| format!("#{i}=op {} client {}", rec.op_id, rec.client))
                    .collect();
                return Err(format!(
                    "key {key}: {}\noperation ids: {}",
                    linearizability::explain(&Register, &ops, &err),
                    clients.join(", ")
                ));
            }
        }
    }
    Ok(summary)
}
