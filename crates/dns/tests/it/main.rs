//! The DNS server over real loopback sockets: UDP and TCP listeners on
//! `127.0.0.1:0`, raw hickory-proto messages as the client, a fake upstream for the
//! recursors. Every wait is bounded by a timeout; nothing sleeps.

mod support;

mod cache;
mod malformed;
mod recursion;
mod transport;
