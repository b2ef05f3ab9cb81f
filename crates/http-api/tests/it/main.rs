//! Integration tests of the HTTP API over real HTTP, one module per route group, all
//! sharing the in-memory backend and server helper in [`support`].

mod support;

mod agent;
mod session;
mod txn;
