//! Integration tests of `tribune-gossip`: a 50-member simulated cluster (manual
//! time, no sockets) and real UDP/TCP gossips on loopback.

mod shell;
mod sim;
