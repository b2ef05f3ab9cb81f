//! The simulated servers' state machine, a tiny key/value store with put and
//! compare-and-swap, and its sequential specification for the checker.
//!
//! Keys and values are single bytes so a handful of keys sees constant
//! conflicts. Every proposal carries the id of the client operation that made
//! it, which makes each log entry unique: the [`Ledger`] uses that to notice two
//! servers applying different entries at one index (a forked log) the moment it
//! happens, and to tell which operations with an unknown outcome took effect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::linearizability::Model;
use crate::error::{ApplyError, RestoreError};
use crate::machine::StateMachine;

pub(super) type Key = u8;
pub(super) type Value = u8;

/// A write as proposed through raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Write {
    Put {
        key: Key,
        value: Value,
    },
    Cas {
        key: Key,
        expected: Option<Value>,
        new: Value,
    },
}

/// What applying a [`Write`] returns to the proposer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteOutput {
    /// A put reports the value it replaced.
    Put { prev: Option<Value> },
    /// A compare-and-swap reports whether it swapped.
    Cas { ok: bool },
}

impl Write {
    pub(super) fn key(&self) -> Key {
        match *self {
            Write::Put { key, .. } | Write::Cas { key, .. } => key,
        }
    }

    /// The proposal bytes: the write plus the id of the operation making it.
    pub(super) fn encode(&self, op_id: u64) -> Vec<u8> {
        let mut out = match *self {
            Write::Put { key, value } => vec![b'P', key, value],
            Write::Cas { key, expected, new } => {
                vec![
                    b'C',
                    key,
                    u8::from(expected.is_some()),
                    expected.unwrap_or(0),
                    new,
                ]
            }
        };
        out.extend_from_slice(&op_id.to_be_bytes());
        out
    }

    pub(super) fn decode(data: &[u8]) -> Option<(Write, u64)> {
        let (body, id) = data.split_at(data.len().checked_sub(8)?);
        let op_id = u64::from_be_bytes(id.try_into().ok()?);
        let write = match *body {
            [b'P', key, value] => Write::Put { key, value },
            [b'C', key, has, expected, new] if has <= 1 => Write::Cas {
                key,
                expected: (has == 1).then_some(expected),
                new,
            },
            _ => return None,
        };
        Some((write, op_id))
    }
}

/// Every entry applied by any server of one simulation, shared by their state
/// machines (it outlives crashes, like an observer outside the cluster).
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// The simulation's clock as of the current driver call; stamps applies.
    pub(super) now: u64,
    /// The entry first applied at each index, and by which server.
    by_index: BTreeMap<u64, (u64, Vec<u8>)>,
    /// When each operation's entry was first applied, by operation id.
    first_applied: BTreeMap<u64, u64>,
}

impl Ledger {
    /// When the entry of operation `op_id` was first applied anywhere, if ever.
    pub(super) fn applied_at(&self, op_id: u64) -> Option<u64> {
        self.first_applied.get(&op_id).copied()
    }

    /// Entries applied so far (distinct indexes).
    pub(super) fn len(&self) -> usize {
        self.by_index.len()
    }
}

pub(super) type SharedLedger = Arc<Mutex<Ledger>>;

#[derive(Debug, thiserror::Error)]
#[error("undecodable kv entry")]
struct Undecodable;

/// The state machine each simulated server runs.
pub(super) struct KvMachine {
    id: u64,
    map: BTreeMap<Key, Value>,
    last_applied: u64,
    ledger: SharedLedger,
}

impl KvMachine {
    pub(super) fn new(id: u64, ledger: SharedLedger) -> Self {
        KvMachine {
            id,
            map: BTreeMap::new(),
            last_applied: 0,
            ledger,
        }
    }

    pub(super) fn map(&self) -> &BTreeMap<Key, Value> {
        &self.map
    }

    pub(super) fn get(&self, key: Key) -> Option<Value> {
        self.map.get(&key).copied()
    }
}

impl StateMachine for KvMachine {
    type Output = WriteOutput;

    fn apply(&mut self, index: u64, data: &[u8]) -> Result<WriteOutput, ApplyError> {
        // Raft safety, checked where it matters: entries are applied in order, and
        // no two servers ever apply different entries at the same index. A panic
        // here fails the seed with the message below.
        assert!(
            index > self.last_applied,
            "server {} applied index {index} after {}",
            self.id,
            self.last_applied
        );
        {
            let mut ledger = self.ledger.lock().expect("ledger lock");
            let now = ledger.now;
            match ledger.by_index.get(&index) {
                Some((first, seen)) => assert!(
                    seen.as_slice() == data,
                    "log fork at index {index}: server {first} applied {seen:?}, server {} applied {data:?}",
                    self.id
                ),
                None => {
                    ledger.by_index.insert(index, (self.id, data.to_vec()));
                    if let Some((_, op_id)) = Write::decode(data) {
                        ledger.first_applied.insert(op_id, now);
                    }
                }
            }
        }
        self.last_applied = index;
        let (write, _) = Write::decode(data).ok_or_else(|| ApplyError(Box::new(Undecodable)))?;
        Ok(match write {
            Write::Put { key, value } => WriteOutput::Put {
                prev: self.map.insert(key, value),
            },
            Write::Cas { key, expected, new } => {
                let ok = self.map.get(&key).copied() == expected;
                if ok {
                    self.map.insert(key, new);
                }
                WriteOutput::Cas { ok }
            }
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        self.map.iter().flat_map(|(k, v)| [*k, *v]).collect()
    }

    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), RestoreError> {
        let pairs = data.chunks_exact(2);
        if !pairs.remainder().is_empty() {
            return Err(RestoreError::Malformed(Box::new(Undecodable)));
        }
        self.map = pairs.map(|kv| (kv[0], kv[1])).collect();
        self.last_applied = index;
        Ok(())
    }
}

/// One operation on one key, as the checker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyOp {
    Put(Value),
    Cas { expected: Option<Value>, new: Value },
    Get,
}

/// What a [`KeyOp`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyResult {
    Prev(Option<Value>),
    Swapped(bool),
    Value(Option<Value>),
}

impl From<Write> for KeyOp {
    fn from(w: Write) -> Self {
        match w {
            Write::Put { value, .. } => KeyOp::Put(value),
            Write::Cas { expected, new, .. } => KeyOp::Cas { expected, new },
        }
    }
}

impl From<WriteOutput> for KeyResult {
    fn from(o: WriteOutput) -> Self {
        match o {
            WriteOutput::Put { prev } => KeyResult::Prev(prev),
            WriteOutput::Cas { ok } => KeyResult::Swapped(ok),
        }
    }
}

/// The sequential specification of one key (absent until first written).
pub(super) struct Register;

impl Model for Register {
    type State = Option<Value>;
    type Input = KeyOp;
    type Output = KeyResult;

    fn init(&self) -> Option<Value> {
        None
    }

    fn step(&self, state: &Option<Value>, input: &KeyOp) -> (Option<Value>, KeyResult) {
        match *input {
            KeyOp::Put(v) => (Some(v), KeyResult::Prev(*state)),
            KeyOp::Cas { expected, new } if *state == expected => {
                (Some(new), KeyResult::Swapped(true))
            }
            KeyOp::Cas { .. } => (*state, KeyResult::Swapped(false)),
            KeyOp::Get => (*state, KeyResult::Value(*state)),
        }
    }

    fn observes_only(&self, input: &KeyOp, output: &KeyResult) -> bool {
        match (*input, *output) {
            (KeyOp::Get, _) | (KeyOp::Cas { .. }, KeyResult::Swapped(false)) => true,
            // Replacing a value with itself: it held `v` before, so after too.
            (KeyOp::Put(v), KeyResult::Prev(prev)) => prev == Some(v),
            (KeyOp::Cas { expected, new }, KeyResult::Swapped(true)) => expected == Some(new),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_round_trip_and_apply() {
        let ledger = SharedLedger::default();
        let mut sm = KvMachine::new(1, ledger.clone());
        let put = Write::Put { key: 2, value: 7 };
        let cas = Write::Cas {
            key: 2,
            expected: Some(7),
            new: 9,
        };
        let absent = Write::Cas {
            key: 3,
            expected: None,
            new: 1,
        };
        for (i, w) in [put, cas, absent].into_iter().enumerate() {
            assert_eq!(
                Write::decode(&w.encode(40 + i as u64)),
                Some((w, 40 + i as u64))
            );
        }
        assert_eq!(Write::decode(b"junk"), None);
        assert_eq!(
            sm.apply(2, &put.encode(1)).unwrap(),
            WriteOutput::Put { prev: None }
        );
        assert_eq!(
            sm.apply(3, &cas.encode(2)).unwrap(),
            WriteOutput::Cas { ok: true }
        );
        assert_eq!(
            sm.apply(4, &cas.encode(3)).unwrap(),
            WriteOutput::Cas { ok: false }
        );
        assert_eq!(
            sm.apply(5, &absent.encode(4)).unwrap(),
            WriteOutput::Cas { ok: true }
        );
        let mut copy = KvMachine::new(2, ledger.clone());
        copy.restore(5, &sm.snapshot()).unwrap();
        assert_eq!(copy.map(), sm.map());
        assert_eq!(ledger.lock().unwrap().applied_at(3), Some(0));
        assert_eq!(ledger.lock().unwrap().applied_at(99), None);
    }

    #[test]
    #[should_panic(expected = "log fork at index 2")]
    fn ledger_catches_a_forked_log() {
        let ledger = SharedLedger::default();
        let mut a = KvMachine::new(1, ledger.clone());
        let mut b = KvMachine::new(2, ledger);
        a.apply(2, &Write::Put { key: 1, value: 1 }.encode(1))
            .unwrap();
        let _ = b.apply(2, &Write::Put { key: 1, value: 2 }.encode(2));
    }

    #[test]
    fn register_model_matches_the_machine() {
        let m = Register;
        assert_eq!(
            m.step(&None, &KeyOp::Put(3)),
            (Some(3), KeyResult::Prev(None))
        );
        let cas = KeyOp::Cas {
            expected: Some(3),
            new: 4,
        };
        assert_eq!(m.step(&Some(3), &cas), (Some(4), KeyResult::Swapped(true)));
        assert_eq!(m.step(&Some(5), &cas), (Some(5), KeyResult::Swapped(false)));
        assert!(m.observes_only(&KeyOp::Get, &KeyResult::Value(None)));
        assert!(m.observes_only(&KeyOp::Put(3), &KeyResult::Prev(Some(3))));
        assert!(!m.observes_only(&KeyOp::Put(3), &KeyResult::Prev(Some(2))));
        assert!(!m.observes_only(&cas, &KeyResult::Swapped(true)));
    }
}
