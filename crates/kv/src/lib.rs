//! KV semantics above `state`: validation of KV writes at the rim of the server and
//! their translation into raft [`Command`]s.
//!
//! The conditional semantics themselves (CAS, lock index) live in `state`'s apply
//! function, because they must run deterministically on every server; this crate holds
//! what is checked once, on the leader, before anything is proposed.

use tribune_state::Command;
use tribune_types::model::ops::{KvDeleteMode, WriteRequest};

/// Consul's default `limits.kv_max_value_size` (raft's suggested max entry size).
pub const DEFAULT_MAX_VALUE_SIZE: usize = 512 * 1024;

/// Limits applied to KV writes.
#[derive(Debug, Clone, Copy)]
pub struct KvLimits {
    /// Largest value accepted, in bytes.
    pub max_value_size: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
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
}
