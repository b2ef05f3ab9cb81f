//! The HTTP flags every API command accepts, and turning them (plus the `CONSUL_HTTP_*`
//! environment) into a [`Client`].
//!
//! Precedence: a flag beats its environment variable, which beats the default. As in
//! the Go client a non-empty token file beats a token — except that an explicit
//! `-token` flag also beats a `CONSUL_HTTP_TOKEN_FILE` that came from the environment.

use tribune_client::{Client, Config, QueryOptions};
use tribune_types::goflag::{FlagSet, Parsed};

use super::Ctx;

/// Adds `-http-addr`, `-token`, `-token-file` and the TLS flags (`-ca-file`,
/// `-ca-path`, `-client-cert`, `-client-key`, `-tls-server-name`), each beating
/// its `CONSUL_*` variable.
pub(crate) fn client_flags(flags: FlagSet) -> FlagSet {
    flags
        .value(
            "http-addr",
            "The address and port of the agent's HTTP API (host:port, http://host:port, \
             https://host:port or unix:///path). Also CONSUL_HTTP_ADDR. Default \
             http://127.0.0.1:8500.",
        )
        .value(
            "token",
            "ACL token to use in the request. Also CONSUL_HTTP_TOKEN. If unspecified, the \
             agent's default token is used.",
        )
        .value(
            "token-file",
            "File containing the ACL token to use in the request. Also CONSUL_HTTP_TOKEN_FILE.",
        )
        .value(
            "ca-file",
            "Path to a CA file to use for TLS when communicating with Consul. Also CONSUL_CACERT.",
        )
        .value(
            "ca-path",
            "Path to a directory of CA certificates to use for TLS when communicating with Consul. Also CONSUL_CAPATH.",
        )
        .value(
            "client-cert",
            "Path to a client cert file to use for TLS when verify_incoming is enabled. Also CONSUL_CLIENT_CERT.",
        )
        .value(
            "client-key",
            "Path to a client key file to use for TLS when verify_incoming is enabled. Also CONSUL_CLIENT_KEY.",
        )
        .value(
            "tls-server-name",
            "The server name to use as the SNI host when connecting via TLS. Also CONSUL_TLS_SERVER_NAME.",
        )
}

/// Adds `-datacenter` and `-stale`.
pub(crate) fn server_flags(flags: FlagSet) -> FlagSet {
    flags
        .value(
            "datacenter",
            "Name of the datacenter to query. Defaults to the datacenter of the queried agent.",
        )
        .bool(
            "stale",
            "Permit any server (not only the leader) to answer. Faster, but can return stale data.",
        )
}

/// Adds the Enterprise `-namespace` and `-partition` flags, accepted and ignored so
/// command lines written for Consul Enterprise still parse.
pub(crate) fn tenancy_flags(flags: FlagSet) -> FlagSet {
    flags
        .value("namespace", "Enterprise namespace (accepted and ignored).")
        .value(
            "partition",
            "Enterprise admin partition (accepted and ignored).",
        )
}

/// The client configuration from the environment overridden by the flags.
pub(crate) fn config(parsed: &Parsed, ctx: &Ctx) -> Config {
    let mut config = Config::from_lookup(|name| ctx.var(name));
    if let Some(addr) = parsed.get("http-addr") {
        config.address = addr.to_owned();
    }
    if let Some(token) = parsed.get("token") {
        config.token = Some(token.to_owned());
        // An explicit -token beats a token file that only came from the environment.
        config.token_file = None;
    }
    if let Some(file) = parsed.get("token-file") {
        config.token_file = Some(file.into());
    }
    if let Some(dc) = parsed.get("datacenter") {
        config.datacenter = Some(dc.to_owned());
    }
    // An empty flag is unset, as in Go (its flag values only apply when non-empty).
    let flag = |name: &str| parsed.get(name).filter(|v| !v.is_empty());
    let t = &mut config.tls_options;
    if let Some(v) = flag("ca-file") {
        t.ca_file = Some(v.into());
    }
    if let Some(v) = flag("ca-path") {
        t.ca_path = Some(v.into());
    }
    if let Some(v) = flag("client-cert") {
        t.cert_file = Some(v.into());
    }
    if let Some(v) = flag("client-key") {
        t.key_file = Some(v.into());
    }
    if let Some(v) = flag("tls-server-name") {
        t.server_name = Some(v.to_owned());
    }
    config
}

/// Builds the client, printing Consul's "Error connecting to Consul agent" on failure.
pub(crate) fn client(parsed: &Parsed, ctx: &mut Ctx) -> Result<Client, i32> {
    Client::new(config(parsed, ctx)).map_err(|err| {
        ctx.error(&format!("Error connecting to Consul agent: {err}"));
        1
    })
}

/// What most commands start with: their flags parsed, then [`client`]; `Err` is
/// the exit code after the message.
pub(crate) fn parse_client(
    flags: &FlagSet,
    args: &[String],
    help: &str,
    ctx: &mut Ctx,
) -> Result<(Parsed, Client), i32> {
    let p = super::parse(flags, args, help, ctx)?;
    let c = client(&p, ctx)?;
    Ok((p, c))
}

/// [`client`], then `/v1/agent/self` so that a command fails early, with Consul's
/// "Error querying Consul agent", when the agent cannot be reached at all (`lock`,
/// `event`, `watch` check this before doing anything).
pub(crate) async fn reachable_client(parsed: &Parsed, ctx: &mut Ctx) -> Result<Client, i32> {
    let client = client(parsed, ctx)?;
    if let Err(err) = client.agent().self_().await {
        ctx.error(&format!("Error querying Consul agent: {err}"));
        return Err(1);
    }
    Ok(client)
}

/// Query options carrying `-stale`.
pub(crate) fn query(parsed: &Parsed) -> QueryOptions {
    QueryOptions {
        stale: parsed.is_set("stale"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> FlagSet {
        tenancy_flags(server_flags(client_flags(FlagSet::new("t"))))
    }

    #[test]
    fn flags_beat_environment() {
        let ctx = Ctx::fake(
            &[
                ("CONSUL_HTTP_ADDR", "10.0.0.1:8500"),
                ("CONSUL_HTTP_TOKEN", "env-token"),
                ("CONSUL_HTTP_TOKEN_FILE", "/env/file"),
            ],
            b"",
        );
        let p = flags().parse(&[] as &[&str]).unwrap();
        let c = config(&p, &ctx);
        assert_eq!(c.address, "10.0.0.1:8500");
        assert_eq!(c.token.as_deref(), Some("env-token"));
        assert_eq!(
            c.token_file.as_deref(),
            Some(std::path::Path::new("/env/file"))
        );

        let p = flags()
            .parse(&[
                "-http-addr=unix:///tmp/s",
                "-token",
                "flag-token",
                "-datacenter",
                "dc2",
                "-stale",
            ])
            .unwrap();
        let c = config(&p, &ctx);
        assert_eq!(c.address, "unix:///tmp/s");
        assert_eq!(c.token.as_deref(), Some("flag-token"));
        assert_eq!(c.token_file, None);
        assert_eq!(c.datacenter.as_deref(), Some("dc2"));
        assert!(query(&p).stale);
    }

    #[test]
    fn tls_flags_beat_environment_and_bad_files_are_connect_errors() {
        let mut ctx = Ctx::fake(
            &[
                ("CONSUL_HTTP_SSL", "true"),
                ("CONSUL_CACERT", "/env/ca.pem"),
                ("CONSUL_TLS_SERVER_NAME", "env.name"),
            ],
            b"",
        );
        let p = flags()
            .parse(&["-ca-file", "/nonexistent/ca.pem", "-client-cert", "/c.pem"])
            .unwrap();
        let c = config(&p, &ctx);
        assert!(c.tls);
        assert_eq!(
            c.tls_options.ca_file.as_deref(),
            Some(std::path::Path::new("/nonexistent/ca.pem"))
        );
        assert_eq!(c.tls_options.server_name.as_deref(), Some("env.name"));
        assert_eq!(client(&p, &mut ctx).unwrap_err(), 1);
        assert!(
            ctx.stderr().starts_with(
                "Error connecting to Consul agent: Error loading CA File: open /nonexistent/ca.pem"
            ),
            "{}",
            ctx.stderr()
        );
    }
}
