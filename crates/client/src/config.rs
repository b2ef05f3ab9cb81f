//! Where and how to reach the agent.
//!
//! [`Config::from_env`] reads the same environment variables as Consul's Go `api`
//! package (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`,
//! `CONSUL_HTTP_AUTH`, `CONSUL_HTTP_SSL`, `CONSUL_HTTP_SSL_VERIFY`, `CONSUL_CACERT`,
//! `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`,
//! `CONSUL_TLS_SERVER_NAME`), so shell setups written for `consul` work unchanged.
//! [`parse_address`] accepts the same address forms: `host:port`,
//! `http[s]://host:port[/prefix]`, and `unix:///path/to/socket`.

use std::path::PathBuf;

use crate::Error;

/// The agent address used when nothing else is configured.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8500";
/// Environment variable holding the agent address.
pub const HTTP_ADDR_ENV: &str = "CONSUL_HTTP_ADDR";
/// Environment variable holding the ACL token.
pub const HTTP_TOKEN_ENV: &str = "CONSUL_HTTP_TOKEN";
/// Environment variable naming a file that holds the ACL token.
pub const HTTP_TOKEN_FILE_ENV: &str = "CONSUL_HTTP_TOKEN_FILE";
/// Environment variable holding HTTP basic-auth credentials (`user[:password]`).
pub const HTTP_AUTH_ENV: &str = "CONSUL_HTTP_AUTH";
/// Environment variable asking for HTTPS.
pub const HTTP_SSL_ENV: &str = "CONSUL_HTTP_SSL";
/// Environment variable that, false, trusts any certificate.
pub const HTTP_SSL_VERIFY_ENV: &str = "CONSUL_HTTP_SSL_VERIFY";
/// Environment variable naming the CA file.
pub const CACERT_ENV: &str = "CONSUL_CACERT";
/// Environment variable naming the CA directory.
pub const CAPATH_ENV: &str = "CONSUL_CAPATH";
/// Environment variable naming the client certificate.
pub const CLIENT_CERT_ENV: &str = "CONSUL_CLIENT_CERT";
/// Environment variable naming the client key.
pub const CLIENT_KEY_ENV: &str = "CONSUL_CLIENT_KEY";
/// Environment variable holding the name the agent's certificate must carry.
pub const TLS_SERVER_NAME_ENV: &str = "CONSUL_TLS_SERVER_NAME";

/// HTTP basic-auth credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password, if any.
    pub password: Option<String>,
}

impl BasicAuth {
    /// Parses `user:password` or `user`, splitting at the first `:` as the Go client does
    /// (so passwords may contain colons).
    pub fn parse(text: &str) -> Self {
        match text.split_once(':') {
            Some((user, pass)) => BasicAuth {
                username: user.to_owned(),
                password: Some(pass.to_owned()),
            },
            None => BasicAuth {
                username: text.to_owned(),
                password: None,
            },
        }
    }
}

/// How to reach the agent and what to send with every request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `host:port`, `http://host:port[/prefix]` or `unix:///path`.
    pub address: String,
    /// ACL token sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// File holding the ACL token; when it holds a non-empty token, that token wins over
    /// [`Config::token`] (the Go client's precedence).
    pub token_file: Option<PathBuf>,
    /// Datacenter sent as `?dc=` unless a call overrides it.
    pub datacenter: Option<String>,
    /// HTTP basic-auth credentials.
    pub http_auth: Option<BasicAuth>,
    /// HTTPS requested (`CONSUL_HTTP_SSL`): even an `http://` address is then
    /// reached over TLS, as with the Go client.
    pub tls: bool,
    /// How to do TLS when it is used.
    pub tls_options: crate::TlsOptions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: DEFAULT_ADDRESS.to_owned(),
            token: None,
            token_file: None,
            datacenter: None,
            http_auth: None,
            tls: false,
            tls_options: crate::TlsOptions::default(),
        }
    }
}

impl Config {
    /// The defaults overridden by the `CONSUL_HTTP_*` environment variables.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`] with a custom variable lookup (tests use a map).
    /// Empty values count as unset, as in the Go client.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let mut config = Config::default();
        if let Some(addr) = get(HTTP_ADDR_ENV) {
            config.address = addr;
        }
        config.token = get(HTTP_TOKEN_ENV);
        config.token_file = get(HTTP_TOKEN_FILE_ENV).map(PathBuf::from);
        config.http_auth = get(HTTP_AUTH_ENV).map(|v| BasicAuth::parse(&v));
        // Go's strconv.ParseBool; anything unparseable is ignored like the Go client does.
        config.tls = get(HTTP_SSL_ENV)
            .and_then(|v| tribune_types::goflag::parse_go_bool(&v))
            .unwrap_or(false);
        let t = &mut config.tls_options;
        t.ca_file = get(CACERT_ENV).map(PathBuf::from);
        t.ca_path = get(CAPATH_ENV).map(PathBuf::from);
        t.cert_file = get(CLIENT_CERT_ENV).map(PathBuf::from);
        t.key_file = get(CLIENT_KEY_ENV).map(PathBuf::from);
        t.server_name = get(TLS_SERVER_NAME_ENV);
        // Go parses it with ParseBool and skips verification unless the result is
        // true, so an unparseable value also turns verification off.
        t.insecure_skip_verify = get(HTTP_SSL_VERIFY_ENV)
            .is_some_and(|v| tribune_types::goflag::parse_go_bool(&v) != Some(true));
        config
    }

    /// The token to send: the token file's trimmed contents when non-empty, else [`Config::token`].
    pub fn resolve_token(&self) -> Result<Option<String>, Error> {
        if let Some(path) = &self.token_file {
            let data = std::fs::read_to_string(path).map_err(|source| Error::TokenFile {
                path: path.clone(),
                source,
            })?;
            let token = data.trim();
            if !token.is_empty() {
                return Ok(Some(token.to_owned()));
            }
        }
        Ok(self.token.clone().filter(|t| !t.is_empty()))
    }
}

/// A parsed agent address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// HTTP or HTTPS over TCP.
    Http {
        /// `http[s]://host:port` plus an optional path prefix, without a trailing `/`.
        base_url: String,
    },
    /// HTTP, or HTTPS with `CONSUL_HTTP_SSL`, over a Unix domain socket.
    Unix {
        /// The socket file.
        path: PathBuf,
        /// Whether to speak TLS over it.
        tls: bool,
    },
}

/// Parses an agent address the way the Go client does.
///
/// `tls` is [`Config::tls`]: with it, even `http://` means HTTPS (the Go client never
/// downgrades an explicit TLS request).
pub fn parse_address(address: &str, tls: bool) -> Result<Endpoint, Error> {
    let address = address.trim();
    let invalid = |reason: &str| Error::InvalidAddress {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", address),
    };
    match scheme {
        "unix" => {
            if rest.is_empty() {
                return Err(invalid("missing socket path"));
            }
            if cfg!(unix) {
                Ok(Endpoint::Unix {
                    path: PathBuf::from(rest),
                    tls,
                })
            } else {
                Err(Error::UnixUnsupported)
            }
        }
        "http" | "https" => {
            let scheme = if scheme == "https" || tls {
                "https"
            } else {
                "http"
            };
            // Everything after the first `/` is a path prefix (agents behind a
            // reverse proxy), as in the Go client.
            let (host, prefix) = match rest.split_once('/') {
                Some((host, prefix)) => (host, prefix.trim_end_matches('/')),
                None => (rest, ""),
            };
            if host.is_empty() {
                return Err(invalid("missing host"));
            }
            let base_url = if prefix.is_empty() {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{prefix}")
            };
            let url = reqwest::Url::parse(&base_url).map_err(|e| invalid(&e.to_string()))?;
            match url.host_str() {
                Some(h) if !h.is_empty() => Ok(Endpoint::Http { base_url }),
                _ => Err(invalid("missing host")),
            }
        }
        other => Err(Error::UnknownScheme(other.to_owned())),
    }
}
