//! Errors and warnings produced while loading the agent configuration.
//!
//! Every error names where the offending value came from ([`Origin`]) and, for values
//! inside a file, the dotted key, because an operator with a dozen files in
//! `/etc/consul.d` needs to know which one to open. Messages follow Consul's wording where
//! scripts or people are likely to grep for them (`data_dir cannot be empty`,
//! `'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive`, ...).

use std::fmt;
use std::io;
use std::path::PathBuf;

use tribune_types::DurationError;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Tribune's copy of Consul's built-in defaults.
    Defaults,
    /// The extra defaults `-dev` applies.
    DevDefaults,
    /// A config file (given with `-config-file` or found in a `-config-dir`).
    File(PathBuf),
    /// The n-th (0-based) `-hcl` snippet on the command line.
    HclFlag(usize),
    /// A command-line flag, named without its dash.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Defaults => f.write_str("built-in defaults"),
            Origin::DevDefaults => f.write_str("built-in -dev defaults"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::HclFlag(i) => write!(f, "-hcl snippet #{}", i + 1),
            Origin::Flag(name) => write!(f, "flag -{name}"),
        }
    }
}

/// Why one value was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// The value has the wrong JSON/HCL type.
    #[error("expected {expected}, found {found}")]
    Type {
        /// What the key takes, e.g. "an integer".
        expected: &'static str,
        /// A short rendering of what was given.
        found: String,
    },
    /// Not a Go duration (`10s`, `1m30s`, `72h`).
    #[error("invalid duration {value:?}: {source}")]
    Duration {
        /// The text given.
        value: String,
        /// The parser's complaint.
        #[source]
        source: DurationError,
    },
    /// Not an IP address.
    #[error("invalid ip address: {value}")]
    Ip {
        /// The text given.
        value: String,
    },
    /// A go-sockaddr template (`{{ GetPrivateIP }}`), which Tribune does not expand.
    #[error(
        "{value:?} is a go-sockaddr template, which is not supported; give a literal IP address"
    )]
    Template {
        /// The text given.
        value: String,
    },
    /// A `unix://` address where only IP addresses make sense.
    #[error("cannot be a unix socket")]
    UnixSocket,
    /// Several addresses where exactly one is needed.
    #[error("multiple addresses found: {value}")]
    MultipleAddresses {
        /// The text given.
        value: String,
    },
    /// A port above 65535.
    #[error("invalid port: {value}")]
    Port {
        /// The number given.
        value: i64,
    },
    /// A negative number where only non-negative ones make sense.
    #[error("cannot be {value}. Must be greater than or equal to zero")]
    Negative {
        /// The number given.
        value: i64,
    },
    /// A number too large for the setting.
    #[error("cannot be {value}. Must be at most {max}")]
    TooLarge {
        /// The number given.
        value: i64,
        /// The largest accepted value.
        max: i64,
    },
}

/// A configuration that parsed but makes no sense (Consul's `validate` step).
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// Not in dev mode and no `data_dir`.
    #[error("data_dir cannot be empty")]
    DataDirEmpty,
    /// `data_dir` exists but is a file.
    #[error("data_dir {:?} is not a directory", path.display().to_string())]
    DataDirNotDirectory {
        /// The configured data directory.
        path: PathBuf,
    },
    /// `data_dir` could not be inspected.
    #[error("Error getting info on data_dir {}: {source}", path.display())]
    DataDirStat {
        /// The configured data directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `bootstrap` on a client.
    #[error("'bootstrap = true' requires 'server = true'")]
    BootstrapRequiresServer,
    /// `bootstrap_expect` below zero.
    #[error("bootstrap_expect cannot be {value}. Must be greater than or equal to zero")]
    BootstrapExpectNegative {
        /// The configured value.
        value: i64,
    },
    /// `bootstrap_expect` on a client.
    #[error("'bootstrap_expect > 0' requires 'server = true'")]
    BootstrapExpectRequiresServer,
    /// `bootstrap_expect` with `-dev`.
    #[error("'bootstrap_expect > 0' not allowed in dev mode")]
    BootstrapExpectInDevMode,
    /// Both bootstrap styles at once.
    #[error("'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive")]
    BootstrapModesExclusive,
    /// Only Raft protocol 3 exists in current Consul.
    #[error("raft_protocol version {value} is not supported by this version of Consul")]
    RaftProtocol {
        /// The configured value.
        value: i64,
    },
    /// `performance.raft_multiplier` outside 1..=10.
    #[error("performance.raft_multiplier cannot be {value}. Must be between 1 and 10")]
    RaftMultiplier {
        /// The configured value.
        value: i64,
    },
    /// A name that must not be empty is empty.
    #[error("{field} cannot be empty")]
    Empty {
        /// The key, e.g. `node_name`.
        field: &'static str,
    },
    /// A datacenter name with characters Consul rejects.
    #[error(
        "{field} can only contain lowercase alphanumeric, - or _ characters. received: {value:?}"
    )]
    BasicName {
        /// The key, e.g. `datacenter`.
        field: &'static str,
        /// The configured value.
        value: String,
    },
    /// `node_id` is not a UUID.
    #[error("node_id {value:?} is not a valid UUID")]
    NodeId {
        /// The configured value.
        value: String,
    },
    /// A port that cannot be disabled was disabled.
    #[error("{what} must be greater than zero")]
    PortRequired {
        /// Consul's name for it (`server-port`, `serf-lan-port`).
        what: &'static str,
    },
    /// A `*_min_port` above its `*_max_port`.
    #[error(
        "{prefix}_min_port must be less than {prefix}_max_port. To disable, set both to zero."
    )]
    PortRange {
        /// `proxy`, `sidecar` or `expose`.
        prefix: &'static str,
    },
    /// An unspecified address (`0.0.0.0`, `::`) given as advertise address.
    #[error("Advertise {which}address cannot be 0.0.0.0, :: or [::]")]
    AdvertiseAny {
        /// `""` for LAN, `"WAN "` for WAN.
        which: &'static str,
    },
    /// `addresses.dns` set to a unix socket.
    #[error("DNS address cannot be a unix socket")]
    DnsUnixSocket,
    /// A recursor given as a unix socket.
    #[error("DNS Recursors cannot be unix sockets: {value}")]
    RecursorUnixSocket {
        /// The configured value.
        value: String,
    },
    /// A recursor given as an unspecified address.
    #[error("DNS recursor address cannot be 0.0.0.0, :: or [::]")]
    RecursorAny,
    /// A `tls_cipher_suites` value Consul refuses.
    #[error("tls.{section}.tls_cipher_suites: {reason}")]
    TlsCipherSuites {
        /// `defaults`, `internal_rpc`, `https` or `grpc`.
        section: &'static str,
        /// Consul's words.
        reason: String,
    },
    /// `ui_config.enabled` together with `ui_config.dir` outside dev mode.
    #[error("Both the ui_config.enabled and ui_config.dir (or -ui and -ui-dir) were specified, please provide only one.\nIf trying to use your own web UI resources, use ui_config.dir or the -ui-dir flag.\nThe web UI is included in the binary so use ui_config.enabled or the -ui flag to enable it")]
    UiAndUiDir,
    /// A UI content path with characters Consul rejects.
    #[error("ui-content-path can only contain alphanumeric, -, _, or /. received: {value:?}")]
    UiContentPath {
        /// The configured value.
        value: String,
    },
    /// A UI content path that looks like an API version.
    #[error("ui-content-path cannot have 'v[0-9]'. received: {value:?}")]
    UiContentPathVersion {
        /// The configured value.
        value: String,
    },
    /// A network that is not `address/prefix-length`.
    #[error("{name}: invalid cidr: {value}")]
    Cidr {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// A `http_config.response_headers` entry HTTP cannot carry.
    #[error("http_config.response_headers: invalid header {name:?}: {value:?}")]
    ResponseHeader {
        /// The header's name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `node_meta` breaks one of Consul's limits.
    #[error("node_meta invalid: {problem}")]
    NodeMeta {
        /// Which limit.
        problem: NodeMetaProblem,
    },
    /// `encrypt` is not a base64 key of 16, 24 or 32 bytes.
    #[error("encrypt has invalid key: {problem}")]
    EncryptKey {
        /// What is wrong with it.
        problem: EncryptKeyProblem,
    },
    /// `acl.default_policy` other than allow/deny.
    #[error("Unsupported default ACL policy: {value}")]
    AclDefaultPolicy {
        /// The configured value.
        value: String,
    },
    /// `acl.down_policy` other than allow/deny/extend-cache/async-cache.
    #[error("Unsupported down ACL policy: {value}")]
    AclDownPolicy {
        /// The configured value.
        value: String,
    },
    /// An unknown log level.
    #[error("Invalid log level: {value}. Valid log levels are: [TRACE DEBUG INFO WARN ERR]")]
    LogLevel {
        /// The configured value.
        value: String,
    },
    /// An unknown `dns_config.recursor_strategy`.
    #[error("dns_config.recursor_strategy: invalid strategy {value:?}, must be 'sequential' or 'random'")]
    RecursorStrategy {
        /// The configured value.
        value: String,
    },
    /// An unknown `limits.request_limits.mode`.
    #[error("limits.request_limits.mode: invalid mode {value:?}, must be 'disabled', 'permissive' or 'enforcing'")]
    RequestLimitsMode {
        /// The configured value.
        value: String,
    },
    /// A limit that cannot be negative is.
    #[error("{field} cannot be {value}. Must be greater than or equal to zero")]
    Negative {
        /// The key.
        field: &'static str,
        /// The configured value.
        value: i64,
    },
    /// `check_output_max_size` of zero.
    #[error("check_output_max_size must be positive, to discard check output use the discard_check_output flag")]
    CheckOutputMaxSize,
    /// `primary_gateways` used where Consul forbids it.
    #[error("'primary_gateways' requires 'server = true'")]
    PrimaryGatewaysRequireServer,
}

/// Which of Consul's node-metadata limits was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeMetaProblem {
    /// More than 64 pairs.
    #[error("Node metadata cannot contain more than 64 key/value pairs")]
    TooManyPairs,
    /// An empty key.
    #[error("Key cannot be blank")]
    BlankKey,
    /// A key with characters outside `[A-Za-z0-9_-]`.
    #[error("Key contains invalid characters: {key:?}")]
    KeyCharacters {
        /// The key.
        key: String,
    },
    /// A key over 128 characters.
    #[error("Key is too long (limit: 128 characters): {key:?}")]
    KeyTooLong {
        /// The key.
        key: String,
    },
    /// A key with the reserved `consul-` prefix.
    #[error("Key prefix 'consul-' is reserved for internal use: {key:?}")]
    ReservedPrefix {
        /// The key.
        key: String,
    },
    /// A value over 512 characters.
    #[error("Value is too long (limit: 512 characters) for key {key:?}")]
    ValueTooLong {
        /// The key whose value is too long.
        key: String,
    },
}

/// What is wrong with a gossip encryption key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptKeyProblem {
    /// Not standard base64.
    #[error("illegal base64 data")]
    Base64,
    /// Decodes, but not to an AES key size.
    #[error("key size must be 16, 24 or 32 bytes, got {len}")]
    Length {
        /// The decoded length.
        len: usize,
    },
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `-config-format` other than `json` or `hcl`.
    #[error("config: -config-format must be either 'hcl' or 'json', got {format:?}")]
    ConfigFormat {
        /// The value given.
        format: String,
    },
    /// A `-config-file`/`-config-dir` path that cannot be opened (often: does not exist).
    #[error("config: Open failed on {}. {source}", path.display())]
    Open {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A config directory that cannot be listed.
    #[error("config: Readdir failed on {}. {source}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A config file that cannot be read (or is not UTF-8).
    #[error("config: failed to read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A `-config-file` whose extension is neither `.json` nor `.hcl`, without `-config-format`.
    #[error("file {} has unknown extension; must be .hcl or .json, or config format must be set", path.display())]
    UnknownExtension {
        /// The file.
        path: PathBuf,
    },
    /// Malformed JSON.
    #[error("failed to parse {origin}: line {line}, column {column}: {source}")]
    Json {
        /// Where the text came from.
        origin: Origin,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// Malformed HCL.
    #[error("failed to parse {origin}: line {line}, column {column}: {message}")]
    Hcl {
        /// Where the text came from.
        origin: Origin,
        /// 1-based line of the problem (0 when the parser gave none).
        line: usize,
        /// 1-based column of the problem (0 when the parser gave none).
        column: usize,
        /// The parser's message.
        message: String,
        /// The parser's error (boxed to keep `Result<_, ConfigError>` small).
        #[source]
        source: Box<hcl::Error>,
    },
    /// An HCL expression that is not a literal and cannot be evaluated without variables.
    #[error("failed to parse {origin}: {key}: unsupported HCL expression: {source}")]
    HclExpression {
        /// Where the text came from.
        origin: Origin,
        /// The dotted key holding the expression.
        key: String,
        /// The evaluator's complaint (boxed to keep `Result<_, ConfigError>` small).
        #[source]
        source: Box<hcl::eval::Error>,
    },
    /// A document whose top level is not an object.
    #[error("failed to parse {origin}: the top level must be an object, found {found}")]
    NotAnObject {
        /// Where the text came from.
        origin: Origin,
        /// What it was instead.
        found: String,
    },
    /// One key's value is unusable.
    #[error("failed to parse {origin}: {key}: {source}")]
    Value {
        /// Where the value came from.
        origin: Origin,
        /// The dotted key.
        key: String,
        /// What is wrong with it (boxed to keep `Result<_, ConfigError>` small).
        #[source]
        source: Box<ValueError>,
    },
    /// `node_name` was not set and the host name cannot be read.
    #[error("node_name: cannot determine the host name: {source}")]
    Hostname {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The merged configuration fails validation.
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// Something worth telling the operator that does not stop the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A key Consul does not define (likely a typo); ignored.
    UnknownKey {
        /// Where it was.
        origin: Origin,
        /// The dotted key.
        key: String,
    },
    /// A deprecated key that was mapped onto its replacement.
    Deprecated {
        /// Where it was.
        origin: Origin,
        /// The old key.
        old: &'static str,
        /// The key it maps to.
        new: &'static str,
    },
    /// A file in a config directory without a `.json`/`.hcl` extension.
    SkippedFile {
        /// The file.
        path: PathBuf,
    },
    /// `bootstrap_expect = 1`, turned into `bootstrap = true` as Consul does.
    BootstrapExpectOne,
    /// `bootstrap_expect = 2`.
    BootstrapExpectTwo,
    /// An even `bootstrap_expect` above 2.
    BootstrapExpectEven,
    /// `bootstrap = true` outside dev mode.
    BootstrapMode,
    /// `client_addr` is empty, so HTTP/DNS/gRPC listen nowhere.
    ClientAddrEmpty,
    /// The node name is not a valid DNS label.
    NodeNameNotDns {
        /// The node name.
        name: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownKey { origin, key } => {
                write!(f, "{origin}: unknown config key {key:?} ignored")
            }
            Warning::Deprecated { origin, old, new } => write!(
                f,
                "{origin}: The '{old}' field is deprecated. Use the '{new}' field instead."
            ),
            Warning::SkippedFile { path } => write!(
                f,
                "skipping file {}, extension must be .hcl or .json, or config format must be set",
                path.display()
            ),
            Warning::BootstrapExpectOne => {
                f.write_str("BootstrapExpect is set to 1; this is the same as Bootstrap mode.")
            }
            Warning::BootstrapExpectTwo => f.write_str(
                "bootstrap_expect = 2: A cluster with 2 servers will provide no failure tolerance.",
            ),
            Warning::BootstrapExpectEven => f.write_str(
                "bootstrap_expect is even number: A cluster with an even number of servers does not achieve optimum fault tolerance.",
            ),
            Warning::BootstrapMode => f.write_str("bootstrap = true: do not enable unless necessary"),
            Warning::ClientAddrEmpty => f.write_str(
                "client_addr is empty, client services (DNS, HTTP, HTTPS, GRPC) will not be listening for connections",
            ),
            Warning::NodeNameNotDns { name } => write!(
                f,
                "Node name {name:?} will not be discoverable via DNS due to invalid characters. Valid characters include all alpha-numerics and dashes."
            ),
        }
    }
}

/// Collects warnings and key reports while sources are processed.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub(crate) warnings: Vec<Warning>,
    pub(crate) unknown_keys: Vec<String>,
    pub(crate) ignored_keys: Vec<String>,
}

impl Notes {
    pub(crate) fn unknown(&mut self, origin: &Origin, key: String) {
        if !self.unknown_keys.contains(&key) {
            self.unknown_keys.push(key.clone());
        }
        self.warnings.push(Warning::UnknownKey {
            origin: origin.clone(),
            key,
        });
    }

    pub(crate) fn ignored(&mut self, key: String) {
        if !self.ignored_keys.contains(&key) {
            self.ignored_keys.push(key);
        }
    }

    pub(crate) fn deprecated(&mut self, origin: &Origin, old: &'static str, new: &'static str) {
        self.warnings.push(Warning::Deprecated {
            origin: origin.clone(),
            old,
            new,
        });
    }
}
