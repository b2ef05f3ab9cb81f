//! Catalog rows for the unit tests: a node and a service instance with the fields
//! DNS reads filled in.

use tribune_types::model::{Node, Service};

/// A node of dc1 at `addr`.
pub(crate) fn node(name: &str, addr: &str) -> Node {
    Node {
        node: name.into(),
        address: addr.into(),
        datacenter: "dc1".into(),
        ..Node::default()
    }
}

/// An instance of `name` on `node`, ID `<name>-<port>`.
pub(crate) fn service(node: &str, name: &str, port: u16) -> Service {
    Service {
        node: node.into(),
        id: format!("{name}-{port}").into(),
        service: name.into(),
        port,
        ..Service::default()
    }
}
