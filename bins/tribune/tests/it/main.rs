//! Real-binary tests: `tribune` processes on loopback with their own data dirs.

mod acl;
mod auto_reload;
mod blocking;
mod checks;
mod cli;
mod cluster;
mod connect;
mod coordinates;
mod discovery_chain;
mod dns;
mod durability;
mod exec;
mod gossip;
mod https;
mod keyring;
mod logging;
mod persistence;
mod prepared_query;
mod rate_limits;
mod rpc_tls;
mod sessions;
mod support;
mod watch;
