//! Identifier newtypes and the health status enum.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A raft log index or a row's create/modify index.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Index(pub u64);

impl Index {
    /// The value clients see in `X-Consul-Index`: Consul never reports 0, because
    /// clients treat 0 as "no blocking" and node-consul rejects it outright.
    pub fn for_header(self) -> u64 {
        self.0.max(1)
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// A node's name, unique in a datacenter.
    NodeName
);
string_id!(
    /// A service instance's ID, unique on its node (defaults to the service name).
    ServiceId
);
string_id!(
    /// A check's ID, unique on its node (defaults to the check name).
    CheckId
);
string_id!(
    /// A datacenter name (`dc1` by default).
    Datacenter
);

/// A session's ID: a UUID (the nil UUID as the default, never a live session's).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct SessionId(pub uuid::Uuid);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The status of a health check, in Consul's order of severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum HealthStatus {
    /// The check passes.
    Passing,
    /// The check warns; the instance is still returned by `?passing=false` queries.
    Warning,
    /// The check fails. Consul's initial status for a check without one.
    #[default]
    Critical,
    /// Maintenance mode: reported as `maintenance` by `/v1/agent/health`, stored as critical.
    Maintenance,
}

/// A status string that is not one of Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid check status: \"{0}\"")]
pub struct UnknownStatus(pub String);

impl HealthStatus {
    /// Consul's lower-case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Passing => "passing",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
            HealthStatus::Maintenance => "maintenance",
        }
    }

    /// Parses a wire name (`passing`, `warning`, `critical`; `maintenance` only for display).
    pub fn parse(s: &str) -> Result<Self, UnknownStatus> {
        match s {
            "passing" => Ok(HealthStatus::Passing),
            "warning" => Ok(HealthStatus::Warning),
            "critical" => Ok(HealthStatus::Critical),
            "maintenance" => Ok(HealthStatus::Maintenance),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_index_is_never_zero() {
        assert_eq!(Index(0).for_header(), 1);
        assert_eq!(Index(7).for_header(), 7);
    }

    #[test]
    fn status_round_trips() {
        for s in ["passing", "warning", "critical", "maintenance"] {
            assert_eq!(HealthStatus::parse(s).unwrap().as_str(), s);
        }
        assert!(HealthStatus::parse("ok").is_err());
    }
}
