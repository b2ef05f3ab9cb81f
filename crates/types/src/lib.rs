//! Domain types shared by every Tribune crate.
//!
//! - [`Index`]: a raft/modify index (never 0 when shown to clients).
//! - [`NodeName`], [`ServiceId`], [`CheckId`], [`SessionId`]: identifiers as newtypes.
//! - [`HealthStatus`]: `passing`, `warning`, `critical`, `maintenance`.
//! - [`connlimit`]: open connections counted per client (`limits.*_max_conns_per_client`).
//! - [`archive`]: the operator snapshot archive (`/v1/snapshot`): Consul's gzipped tar, checksummed.
//! - [`duration`]: Go `time.Duration` syntax (`1m30s`, `0.001s`), used by the HTTP API, CLI and config.
//! - [`goflag`]: Go `flag`-package command-line parsing (`-flag`, `-flag=value`, `--flag value`).
//! - [`utc`]: calendar time of a Unix timestamp.
//! - [`net`]: CIDR network ranges (`http_config.allow_write_http_from`).
//! - [`model`]: the catalog, KV and config-entry records the state machine stores.
//!
//! This crate has no I/O and no async runtime.

pub mod archive;
pub mod connlimit;
pub mod duration;
pub mod goflag;
pub mod ids;
pub mod model;
pub mod net;
pub mod utc;

pub use duration::{format_go_duration, parse_go_duration, DurationError};
pub use ids::{
    CheckId, Datacenter, HealthStatus, Index, NodeName, ServiceId, SessionId, UnknownStatus,
};
