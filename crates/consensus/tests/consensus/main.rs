//! Integration tests for tribune-consensus: durability, snapshots, group commit,
//! proposal routing, shutdown and a small in-process cluster.

mod cluster;
mod single;
mod snapshots;
mod support;
