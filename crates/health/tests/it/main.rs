//! Integration tests of `tribune-health`: the runner against real targets on
//! loopback (ports bound to 0), waiting on the result channel with a timeout.

mod grpc;
mod http;
mod runner;
mod script;
mod sockets;
mod support;
mod tls;
