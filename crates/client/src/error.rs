//! The one error type every client call returns.
//!
//! Its `Display` strings follow the Go `api` package where Consul users see them
//! (`Unexpected response code: 500 (body)`), because the CLI prints them verbatim
//! and scripts written against Consul grep for them.

use std::path::PathBuf;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent answered with a status the call does not accept.
    #[error("Unexpected response code: {code} ({body})")]
    Status {
        /// The HTTP status code.
        code: u16,
        /// The response body (Consul's error bodies are plain text).
        body: String,
    },
    /// The request never got an HTTP answer (connection refused, reset, DNS, ...).
    ///
    /// The message already contains the whole `source()` chain of the underlying
    /// error, so it is not exposed as a `source` again (that would print it twice).
    #[error("{message}")]
    Transport {
        /// The error and its causes, joined with `: `.
        message: String,
    },
    /// `-http-addr` / `CONSUL_HTTP_ADDR` could not be turned into a URL.
    #[error("invalid HTTP address {address:?}: {reason}")]
    InvalidAddress {
        /// What was given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An address scheme other than `http`, `https` and `unix` (Go's wording).
    #[error("Unknown protocol scheme: {0}")]
    UnknownScheme(String),
    /// The TLS settings cannot be used (a CA or key file, half a key pair); the
    /// text is the Go client's.
    #[error("{0}")]
    Tls(String),
    /// `unix://` addresses need a Unix platform.
    #[error("unix socket addresses are not supported on this platform")]
    UnixUnsupported,
    /// The token file could not be read.
    #[error("Error loading token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A 2xx response whose body is not the JSON the endpoint documents.
    #[error("failed to decode the response of {path}: {source}")]
    Decode {
        /// The request path, to tell which endpoint misbehaved.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A response header that should be numeric or boolean is not.
    #[error("invalid {name} header: {value:?}")]
    Header {
        /// Header name.
        name: &'static str,
        /// The value received.
        value: String,
    },
    /// The request could not be built from the given options.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A local file a request streams to or from failed.
    #[error("local file: {0}")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// The HTTP status code, if the agent answered with an unexpected one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying may help: the agent could not be reached, or it answered 500
    /// (no leader, an RPC failure). The Go client's `IsRetryableError`, which lock and
    /// semaphore monitors use to ride out brief outages.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Transport { .. } | Error::Status { code: 500, .. }
        )
    }

    /// Wraps a transport error with its whole cause chain, since reqwest's own
    /// `Display` stops at "error sending request" and hides "connection refused".
    pub(crate) fn transport(err: reqwest::Error) -> Self {
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            let text = cause.to_string();
            // hyper/reqwest repeat a cause's text in its parent now and then.
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        Error::Transport { message }
    }
}
