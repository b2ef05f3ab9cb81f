//! KV, session and transaction semantics above `state`: validation of writes at the
//! rim of the server and their translation into raft [`Command`]s, and the leader's
//! session TTL tracker ([`ttl::SessionTimers`], sans-io).
//!
//! The conditional semantics themselves (CAS, lock index, invalidation) live in
//! `state`'s apply function, because they must run deterministically on every server;
//! this crate holds what is checked once, on the leader, before anything is proposed.

pub mod ttl;

use std::time::Duration;
use tribune_state::Command;
use tribune_types::model::ops::{KvDeleteMode, TxnOp, WriteRequest};
use tribune_types::{format_go_duration, parse_go_duration};

/// Consul's `SessionTTLMax`.
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(86_400);

/// Consul's default `limits.kv_max_value_size` (raft's suggested max entry size).
pub const DEFAULT_MAX_VALUE_SIZE: usize = 512 * 1024;

/// Limits applied to writes before they are proposed.
#[derive(Debug, Clone, Copy)]
pub struct KvLimits {
    /// Largest value accepted, in bytes.
    pub max_value_size: usize,
    /// Shortest session TTL accepted (`session_ttl_min`, 10 s by default).
    pub session_ttl_min: Duration,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            session_ttl_min: Duration::from_secs(10),
        }
    }
}

/// A KV write that must not be proposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// No key given where one is required (Consul: 400 "Missing key name").
    #[error("Missing key name")]
    MissingKey,
    /// The value exceeds the limit (Consul: 413).
    #[error("Request body({size} bytes) too large, max size: {max} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.")]
    ValueTooLarge {
        /// Value size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// A session TTL that does not parse (Consul: 500 with this text).
    #[error("Session TTL '{ttl}' invalid: {reason}")]
    SessionTtlInvalid {
        /// The TTL as given.
        ttl: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A session TTL out of range. Clients match the `Invalid Session TTL` prefix and
    /// then read `Config.SessionTTLMin` from `/v1/agent/self`.
    #[error("Invalid Session TTL '{nanos}', must be between [{min}={max}]")]
    SessionTtlRange {
        /// The TTL in nanoseconds (Consul prints it so).
        nanos: u128,
        /// Minimum, Go-formatted.
        min: String,
        /// Maximum, Go-formatted.
        max: String,
    },
    /// A transaction's value is too large (Consul: 413).
    #[error("Value for key {key:?} is too large ({size} > {max} bytes)")]
    TxnValueTooLarge {
        /// The key.
        key: String,
        /// Value size.
        size: usize,
        /// Limit.
        max: usize,
    },
}

/// Validates a write and turns it into a raft command. Non-KV writes pass through.
pub fn to_command(req: WriteRequest, limits: &KvLimits) -> Result<Command, KvError> {
    match &req {
        WriteRequest::KvSet { entry, .. } => {
            if entry.key.is_empty() {
                return Err(KvError::MissingKey);
            }
            if entry.value.len() > limits.max_value_size {
                return Err(KvError::ValueTooLarge {
                    size: entry.value.len(),
                    max: limits.max_value_size,
                });
            }
        }
        // Deleting the whole tree from the root is allowed (empty prefix); a single
        // key delete needs a key.
        WriteRequest::KvDelete { key, mode } if key.is_empty() && *mode != KvDeleteMode::Tree => {
            return Err(KvError::MissingKey);
        }
        WriteRequest::SessionCreate(sess) if !sess.ttl.is_empty() => {
            let ttl = parse_go_duration(&sess.ttl).map_err(|e| KvError::SessionTtlInvalid {
                ttl: sess.ttl.clone(),
                reason: e.to_string(),
            })?;
            if !ttl.is_zero() && (ttl < limits.session_ttl_min || ttl > SESSION_TTL_MAX) {
                return Err(KvError::SessionTtlRange {
                    nanos: ttl.as_nanos(),
                    min: format_go_duration(limits.session_ttl_min),
                    max: format_go_duration(SESSION_TTL_MAX),
                });
            }
        }
        WriteRequest::Txn(ops) => {
            for op in ops {
                if let TxnOp::Kv { entry, .. } = op {
                    if entry.value.len() > limits.max_value_size {
                        return Err(KvError::TxnValueTooLarge {
                            key: entry.key.clone(),
                            size: entry.value.len(),
                            max: limits.max_value_size,
                        });
                    }
                }
            }
        }
        _ => {}
    }
    Ok(Command::Request(req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_types::model::ops::KvSetMode;
    use tribune_types::model::KvEntry;

    fn put(key: &str, len: usize) -> WriteRequest {
        WriteRequest::KvSet {
            entry: KvEntry {
                key: key.into(),
                value: vec![0; len],
                ..Default::default()
            },
            mode: KvSetMode::Set,
        }
    }

    #[test]
    fn validates_keys_and_sizes() {
        let l = KvLimits::default();
        assert!(to_command(put("a", DEFAULT_MAX_VALUE_SIZE), &l).is_ok());
        assert_eq!(
            to_command(put("a", DEFAULT_MAX_VALUE_SIZE + 1), &l),
            Err(KvError::ValueTooLarge {
                size: DEFAULT_MAX_VALUE_SIZE + 1,
                max: DEFAULT_MAX_VALUE_SIZE
            })
        );
        assert_eq!(to_command(put("", 1), &l), Err(KvError::MissingKey));
        let del = |mode| WriteRequest::KvDelete {
            key: String::new(),
            mode,
        };
        assert!(to_command(del(KvDeleteMode::Tree), &l).is_ok());
        assert_eq!(
            to_command(del(KvDeleteMode::Key), &l),
            Err(KvError::MissingKey)
        );
    }

    fn session(ttl: &str) -> WriteRequest {
        WriteRequest::SessionCreate(tribune_types::model::Session {
            ttl: ttl.into(),
            ..Default::default()
        })
    }

    #[test]
    fn validates_session_ttls_with_consuls_texts() {
        let l = KvLimits::default();
        assert!(to_command(session(""), &l).is_ok());
        assert!(to_command(session("0s"), &l).is_ok());
        assert!(to_command(session("10s"), &l).is_ok());
        assert!(to_command(session("24h"), &l).is_ok());
        assert_eq!(
            to_command(session("5s"), &l).unwrap_err().to_string(),
            "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"
        );
        assert!(to_command(session("86401s"), &l)
            .unwrap_err()
            .to_string()
            .starts_with("Invalid Session TTL"));
        assert!(to_command(session("soon"), &l)
            .unwrap_err()
            .to_string()
            .starts_with("Session TTL 'soon' invalid"));
    }
}
