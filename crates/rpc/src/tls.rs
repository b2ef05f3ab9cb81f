//! TLS on the internal RPC (`tls.internal_rpc`), with Consul's semantics for
//! its server port (`tlsutil.Configurator`, `agent/consul/rpc.go`):
//!
//! - **Incoming.** The server port takes TLS and plain connections on the
//!   same port, told apart by the first byte (a TLS handshake record starts
//!   with `0x16`; gRPC's plain HTTP/2 preface with `P`). With
//!   `verify_incoming`, a plain connection is closed ("Non-TLS connection
//!   attempted with VerifyIncoming set") and a TLS client must present a
//!   certificate that chains to the CAs. Without a certificate of its own the
//!   server closes TLS connections ("TLS connection attempted, server not
//!   configured for TLS").
//! - **Outgoing.** With `verify_outgoing`, every connection to a server
//!   (forwarding, raft, a client agent's pool) is TLS, and the server's
//!   certificate must chain to the CAs; with `verify_server_hostname` it must
//!   also be valid for `server.<datacenter>.<domain>`, the name the connection
//!   is opened for. Without it only the chain is checked and no name is sent
//!   (Consul's `wrapTLSClient`). The agent's certificate is presented when the
//!   server asks for one.
//! - **Servers only.** With both `verify_incoming` and
//!   `verify_server_hostname`, raft traffic is taken only from a peer whose
//!   client certificate is valid for `server.<datacenter>.<domain>`
//!   (Consul's `AuthorizeServerConn`): a client agent's certificate, signed
//!   by the same CA, cannot make it a raft peer.
//!
//! [`RpcTls`] holds the settings in force and is shared by the listener and
//! every dialer of a process, so a reload applies to new connections without
//! a restart, as Consul's `Update` does; open connections keep theirs.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

/// The first byte of a TLS handshake record (a ClientHello).
pub(crate) const TLS_HANDSHAKE: u8 = 0x16;

/// What `tls.internal_rpc` says, with its files already read.
#[derive(Debug, Clone, Default)]
pub struct RpcTlsSettings {
    /// The CA certificates (`ca_file`, `ca_path`).
    pub ca: Vec<CertificateDer<'static>>,
    /// The agent's certificate and key (`cert_file`, `key_file`).
    pub cert: Option<Arc<CertifiedKey>>,
    /// `verify_incoming` (or the legacy `verify_incoming_rpc`).
    pub verify_incoming: bool,
    /// `verify_outgoing`.
    pub verify_outgoing: bool,
    /// `verify_server_hostname`.
    pub verify_server_hostname: bool,
    /// `server.<datacenter>.<domain>`, the name servers' certificates carry.
    pub server_name: String,
    /// TLS 1.3 only (a `TLSv1_3` minimum, or no TLS 1.2 suite to offer);
    /// otherwise 1.2 and 1.3 (rustls has nothing older).
    pub tls13_only: bool,
    /// The cryptography and the suites offered (`tls_cipher_suites`);
    /// `None`: rustls's ring provider with its defaults.
    pub provider: Option<Arc<rustls::crypto::CryptoProvider>>,
}

/// Why the settings cannot be used; the agent refuses to start, or the
/// reload is refused.
#[derive(Debug, thiserror::Error)]
pub enum RpcTlsError {
    /// `verify_outgoing` without a CA to verify servers against.
    #[error("VerifyOutgoing set, and no CA certificate provided!")]
    NoCaOutgoing,
    /// `verify_incoming` without a CA to verify clients against.
    #[error("VerifyIncoming set but no CA certificates were provided")]
    NoCaIncoming,
    /// `verify_incoming` without a certificate to present.
    #[error("VerifyIncoming requires either a Cert and Key pair in the configuration file, or auto_encrypt/auto_config be enabled")]
    NoCertificate,
    /// `server.<datacenter>.<domain>` is not a DNS name.
    #[error("invalid server name {0:?}")]
    Name(String),
    /// rustls refused the settings.
    #[error("cannot configure TLS for the server RPC: {0}")]
    Rustls(String),
}

/// One configuration of TLS on the internal RPC, ready for connections.
#[derive(Debug, Clone, Default)]
pub struct RpcTlsConfig {
    /// The server side; `None` without a certificate.
    incoming: Option<Arc<ServerConfig>>,
    /// `verify_incoming`: plain connections are refused.
    require_tls: bool,
    /// The client side; `None` without `verify_outgoing`.
    outgoing: Option<Arc<ClientConfig>>,
    /// With `verify_server_hostname`: the name connections are opened for.
    server_name: Option<ServerName<'static>>,
    /// The name raft peers' certificates must carry (`AuthorizeServerConn`).
    raft_peer_name: Option<ServerName<'static>>,
    /// With `verify_incoming`: what a client certificate must chain to, asked
    /// again when a raft call opens, so a connection made under a CA that a
    /// reload has dropped opens no more raft calls (one already open carries
    /// on until it breaks, as a Consul connection checked once does).
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
}

impl RpcTlsConfig {
    /// No TLS anywhere: what an agent without `tls.internal_rpc` settings runs.
    pub fn plain() -> Self {
        Self::default()
    }

    /// The configuration `s` asks for, refused with Consul's words when it
    /// cannot work.
    pub fn build(s: &RpcTlsSettings) -> Result<Self, RpcTlsError> {
        if s.verify_outgoing && s.ca.is_empty() {
            return Err(RpcTlsError::NoCaOutgoing);
        }
        if s.verify_incoming {
            if s.ca.is_empty() {
                return Err(RpcTlsError::NoCaIncoming);
            }
            if s.cert.is_none() {
                return Err(RpcTlsError::NoCertificate);
            }
        }
        // Only `verify_server_hostname` uses the name.
        let name = if s.verify_server_hostname {
            let name = ServerName::try_from(s.server_name.clone())
                .ok()
                .filter(|n| matches!(n, ServerName::DnsName(_)))
                .ok_or_else(|| RpcTlsError::Name(s.server_name.clone()))?;
            Some(name)
        } else {
            None
        };
        let provider = s
            .provider
            .clone()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let versions: &[&'static rustls::SupportedProtocolVersion] = if s.tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::ALL_VERSIONS
        };
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(s.ca.iter().cloned());
        let roots = Arc::new(roots);
        let rustls_error = |e: rustls::Error| RpcTlsError::Rustls(e.to_string());

        let client_verifier = if s.verify_incoming {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::clone(&roots),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| RpcTlsError::Rustls(e.to_string()))?;
            Some(verifier)
        } else {
            None
        };
        let incoming = match &s.cert {
            None => None,
            Some(cert) => {
                let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
                    .with_protocol_versions(versions)
                    .map_err(rustls_error)?;
                let builder = if let Some(verifier) = &client_verifier {
                    builder.with_client_cert_verifier(Arc::clone(verifier))
                } else {
                    builder.with_no_client_auth()
                };
                let mut config = builder.with_cert_resolver(Arc::new(Presents(Arc::clone(cert))));
                config.alpn_protocols = vec![b"h2".to_vec()];
                Some(Arc::new(config))
            }
        };

        let outgoing = if s.verify_outgoing {
            let verifier: Arc<dyn ServerCertVerifier> = if s.verify_server_hostname {
                WebPkiServerVerifier::builder_with_provider(
                    Arc::clone(&roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| RpcTlsError::Rustls(e.to_string()))?
            } else {
                Arc::new(ChainOnly {
                    roots: Arc::clone(&roots),
                    algorithms: provider.signature_verification_algorithms,
                })
            };
            let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(versions)
                .map_err(rustls_error)?
                .dangerous()
                .with_custom_certificate_verifier(verifier);
            let mut config = match &s.cert {
                Some(cert) => {
                    builder.with_client_cert_resolver(Arc::new(Presents(Arc::clone(cert))))
                }
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![b"h2".to_vec()];
            Some(Arc::new(config))
        } else {
            None
        };

        Ok(RpcTlsConfig {
            incoming,
            require_tls: s.verify_incoming,
            outgoing,
            raft_peer_name: name.clone().filter(|_| s.verify_incoming),
            client_verifier,
            server_name: name,
        })
    }

    /// Whether connections to servers use TLS (`verify_outgoing`).
    pub fn outgoing(&self) -> bool {
        self.outgoing.is_some()
    }
}

/// The TLS settings in force, shared by a process's listener and dialers.
#[derive(Debug, Default)]
pub struct RpcTls(RwLock<Arc<RpcTlsConfig>>);

impl RpcTls {
    /// Settings shared from now on; plain by default.
    pub fn new(config: RpcTlsConfig) -> Arc<Self> {
        Arc::new(RpcTls(RwLock::new(Arc::new(config))))
    }

    /// Replaces the settings; new connections take them, open ones keep theirs.
    pub fn set(&self, config: RpcTlsConfig) {
        *self.0.write() = Arc::new(config);
    }

    pub(crate) fn current(&self) -> Arc<RpcTlsConfig> {
        Arc::clone(&self.0.read())
    }

    /// Opens a connection to the server at `addr`, over TLS with
    /// `verify_outgoing`.
    pub(crate) async fn connect(&self, addr: &str) -> io::Result<Conn<ClientTls>> {
        let tcp = TcpStream::connect(addr).await?;
        // Answers are small and written in more than one piece (see `listen`).
        tcp.set_nodelay(true)?;
        let config = self.current();
        let Some(client) = config.outgoing.clone() else {
            return Ok(Conn::Plain(tcp));
        };
        // Without `verify_server_hostname` no name is checked and, as the
        // connection is opened for an address, none is sent.
        let name = match &config.server_name {
            Some(name) => name.clone(),
            None => ServerName::IpAddress(tcp.peer_addr()?.ip().into()),
        };
        let tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await?;
        Ok(Conn::Tls(Box::new(tls)))
    }

    /// The connection `tcp`, whose first byte is `first`, as the server
    /// serves it: in the clear, over TLS, or not at all (`Err`, with why).
    pub(crate) async fn accept(
        &self,
        tcp: TcpStream,
        first: u8,
    ) -> Result<Conn<ServerTls>, String> {
        let config = self.current();
        if first != TLS_HANDSHAKE {
            if config.require_tls {
                return Err("Non-TLS connection attempted with VerifyIncoming set".to_owned());
            }
            return Ok(Conn::Plain(tcp));
        }
        let Some(server) = config.incoming.clone() else {
            return Err("TLS connection attempted, server not configured for TLS".to_owned());
        };
        let tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        Ok(Conn::Tls(Box::new(tls)))
    }

    /// Whether a connection that presented `peer` (its certificate chain,
    /// end entity first) may carry raft traffic: always, unless
    /// `verify_incoming` and `verify_server_hostname` are both on; then only
    /// with a certificate valid for `server.<datacenter>.<domain>`.
    pub(crate) fn authorize_server(
        &self,
        peer: Option<&[CertificateDer<'static>]>,
    ) -> Result<(), String> {
        let config = self.current();
        let Some(name) = &config.raft_peer_name else {
            return Ok(());
        };
        let name_str = match name {
            ServerName::DnsName(d) => d.as_ref().to_owned(),
            other => format!("{other:?}"),
        };
        let refused = |why: &str| {
            format!("AuthorizeServerConn failed certificate validation for certificate with a SAN.DNSName of {name_str}: {why}")
        };
        let Some(end_entity) = peer.and_then(|chain| chain.first()) else {
            return Err(refused("no verified chains"));
        };
        let parsed =
            ParsedCertificate::try_from(end_entity).map_err(|e| refused(&e.to_string()))?;
        rustls::client::verify_server_name(&parsed, name).map_err(|e| refused(&e.to_string()))?;
        // Against the CAs in force now, not those of the handshake.
        if let Some(verifier) = &config.client_verifier {
            let intermediates = peer.map_or(&[][..], |chain| &chain[1..]);
            verifier
                .verify_client_cert(end_entity, intermediates, UnixTime::now())
                .map_err(|e| refused(&e.to_string()))?;
        }
        Ok(())
    }
}

/// The client side of a TLS connection to a server.
pub(crate) type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;
/// The server side of a TLS connection from a client.
pub(crate) type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// A connection in the clear or over TLS.
pub(crate) enum Conn<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

impl Conn<ServerTls> {
    /// The client's address.
    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Conn::Plain(s) => s.peer_addr().ok(),
            Conn::Tls(s) => s.get_ref().0.peer_addr().ok(),
        }
    }

    /// The client's certificate chain, if it presented one over TLS.
    pub(crate) fn peer_certificates(&self) -> Option<Arc<[CertificateDer<'static>]>> {
        match self {
            Conn::Plain(_) => None,
            Conn::Tls(s) => s.get_ref().1.peer_certificates().map(Arc::from),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Conn<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Presents the agent's certificate, as server and as client, whatever the
/// other side hints (Go's `GetCertificate`/`GetClientCertificate` in
/// Consul's configurator).
#[derive(Debug)]
struct Presents(Arc<CertifiedKey>);

impl ResolvesServerCert for Presents {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

impl ResolvesClientCert for Presents {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `verify_outgoing` without `verify_server_hostname`: the server's
/// certificate must chain to the CAs, whatever names it carries (Consul
/// checks the chain itself with an empty `DNSName`).
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A lazily connecting channel to the server at `addr` (`ip:port`) with the
/// settings of `endpoint`, each connection dialed through `tls` as it stands
/// then (a connect timeout set on `endpoint` covers the TLS handshake too).
pub(crate) fn lazy_channel(tls: &Arc<RpcTls>, addr: &str, endpoint: Endpoint) -> Channel {
    let tls = Arc::clone(tls);
    let addr: Arc<str> = addr.into();
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let (tls, addr) = (Arc::clone(&tls), Arc::clone(&addr));
        async move { tls.connect(&addr).await.map(TokioIo::new) }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GrpcClient, RpcError, ServerApi};
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    use rustls::pki_types::PrivateKeyDer;
    use tribune_proto::v1::server_client::ServerClient;
    use tribune_types::model::ops::{KvSetMode, WriteRequest};
    use tribune_types::model::KvEntry;

    /// A CA and the leaf certificates it signs.
    struct Pki {
        ca: rcgen::Certificate,
        key: KeyPair,
    }

    impl Pki {
        fn new() -> Self {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca = params.self_signed(&key).unwrap();
            Pki { ca, key }
        }

        fn ca(&self) -> CertificateDer<'static> {
            self.ca.der().clone()
        }

        /// A certificate for `names`, good for both ends of a connection as
        /// `consul tls cert create` makes them.
        fn leaf(&self, names: &[&str]) -> Arc<CertifiedKey> {
            let key = KeyPair::generate().unwrap();
            let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &self.ca, &self.key).unwrap();
            let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
            let signing = rustls::crypto::ring::default_provider()
                .key_provider
                .load_private_key(der)
                .unwrap();
            Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing))
        }
    }

    const SERVER: &str = "server.dc1.consul";

    fn settings(ca: &Pki, cert: Option<Arc<CertifiedKey>>, verify: [bool; 3]) -> RpcTlsConfig {
        let [verify_incoming, verify_outgoing, verify_server_hostname] = verify;
        RpcTlsConfig::build(&RpcTlsSettings {
            ca: vec![ca.ca()],
            cert,
            verify_incoming,
            verify_outgoing,
            verify_server_hostname,
            server_name: SERVER.to_owned(),
            tls13_only: false,
            provider: None,
        })
        .unwrap()
    }

    /// A server whose writes all fail with "No cluster leader": an answer
    /// from it proves the request got through, whatever the transport.
    async fn server(config: RpcTlsConfig) -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(crate::serve(
            listener,
            Arc::new(crate::silent::Silent),
            Default::default(),
            RpcTls::new(config),
            async {
                let _ = stopped.await;
            },
        ));
        (addr, stop)
    }

    /// Whether a write through a client dialed with `config` reaches the
    /// server at `addr` (the connection is refused otherwise).
    async fn reaches(addr: &str, config: RpcTlsConfig) -> bool {
        let client = GrpcClient::dial(addr, &RpcTls::new(config)).unwrap();
        let write = WriteRequest::KvSet {
            entry: KvEntry {
                key: "k".into(),
                ..Default::default()
            },
            mode: KvSetMode::Set,
        };
        match client.write(write).await {
            Err(RpcError::NoLeader) => true,
            Err(RpcError::Transport(_)) => false,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    #[tokio::test]
    async fn verify_incoming_takes_only_tls_clients_with_a_certificate_of_the_ca() {
        let pki = Pki::new();
        let server_cert = pki.leaf(&[SERVER]);
        let (addr, _stop) = server(settings(&pki, Some(server_cert), [true, true, true])).await;
        assert!(!reaches(&addr, RpcTlsConfig::plain()).await, "in the clear");
        assert!(
            !reaches(&addr, settings(&pki, None, [false, true, true])).await,
            "no client certificate"
        );
        let other = Pki::new();
        // It trusts the server's CA too, so it is the server that refuses.
        let stranger = RpcTlsConfig::build(&RpcTlsSettings {
            ca: vec![other.ca(), pki.ca()],
            cert: Some(other.leaf(&["client.dc1.consul"])),
            verify_outgoing: true,
            verify_server_hostname: true,
            server_name: SERVER.to_owned(),
            ..Default::default()
        })
        .unwrap();
        assert!(!reaches(&addr, stranger).await, "another CA's certificate");
        let client = pki.leaf(&["client.dc1.consul"]);
        assert!(reaches(&addr, settings(&pki, Some(client), [false, true, true])).await);
    }

    #[tokio::test]
    async fn without_verify_incoming_both_tls_and_plain_clients_are_served() {
        let pki = Pki::new();
        let (addr, _stop) = server(settings(
            &pki,
            Some(pki.leaf(&[SERVER])),
            [false, true, true],
        ))
        .await;
        assert!(reaches(&addr, RpcTlsConfig::plain()).await);
        assert!(reaches(&addr, settings(&pki, None, [false, true, true])).await);
        // A server without a certificate closes TLS connections.
        let (bare, _stop) = server(RpcTlsConfig::plain()).await;
        assert!(reaches(&bare, RpcTlsConfig::plain()).await);
        assert!(!reaches(&bare, settings(&pki, None, [false, true, false])).await);
    }

    #[tokio::test]
    async fn verify_server_hostname_wants_the_servers_name_and_otherwise_the_chain_alone() {
        let pki = Pki::new();
        // A certificate of the right CA without the servers' name.
        let (addr, _stop) = server(settings(
            &pki,
            Some(pki.leaf(&["client.dc1.consul"])),
            [false, false, false],
        ))
        .await;
        assert!(!reaches(&addr, settings(&pki, None, [false, true, true])).await);
        assert!(reaches(&addr, settings(&pki, None, [false, true, false])).await);
        // The chain is still checked without the name.
        let other = Pki::new();
        assert!(!reaches(&addr, settings(&other, None, [false, true, false])).await);
    }

    #[tokio::test]
    async fn raft_traffic_needs_a_servers_certificate_when_both_verifications_are_on() {
        let pki = Pki::new();
        let server_cert = pki.leaf(&[SERVER]);
        let (addr, _stop) = server(settings(
            &pki,
            Some(server_cert.clone()),
            [true, true, true],
        ))
        .await;
        let raft = |cert: Arc<CertifiedKey>| {
            let tls = RpcTls::new(settings(&pki, Some(cert), [false, true, true]));
            let addr = addr.clone();
            async move {
                let ep = Endpoint::from_shared(format!("http://{addr}")).unwrap();
                let mut client = ServerClient::new(lazy_channel(&tls, &addr, ep));
                client.raft(futures::stream::empty()).await.map(|_| ())
            }
        };
        let refused = raft(pki.leaf(&["client.dc1.consul"])).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert!(
            refused.message().contains("AuthorizeServerConn"),
            "{refused:?}"
        );
        raft(server_cert).await.unwrap();
    }

    #[tokio::test]
    async fn raft_peers_are_checked_against_the_cas_in_force() {
        let (old, new) = (Pki::new(), Pki::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let tls = RpcTls::new(settings(
            &old,
            Some(old.leaf(&[SERVER])),
            [true, true, true],
        ));
        tokio::spawn(crate::serve(
            listener,
            Arc::new(crate::silent::Silent),
            Default::default(),
            Arc::clone(&tls),
            std::future::pending(),
        ));
        let peer = RpcTls::new(settings(
            &old,
            Some(old.leaf(&[SERVER])),
            [false, true, true],
        ));
        let ep = Endpoint::from_shared(format!("http://{addr}")).unwrap();
        let mut client = ServerClient::new(lazy_channel(&peer, &addr, ep));
        client.raft(futures::stream::empty()).await.unwrap();
        // A reload replaces the CA: the open connection's certificate, from
        // the old one, no longer makes it a raft peer.
        tls.set(settings(
            &new,
            Some(new.leaf(&[SERVER])),
            [true, true, true],
        ));
        let refused = client.raft(futures::stream::empty()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    }

    #[tokio::test]
    async fn new_settings_apply_to_new_connections() {
        let pki = Pki::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let tls = RpcTls::new(RpcTlsConfig::plain());
        tokio::spawn(crate::serve(
            listener,
            Arc::new(crate::silent::Silent),
            Default::default(),
            Arc::clone(&tls),
            std::future::pending(),
        ));
        assert!(reaches(&addr, RpcTlsConfig::plain()).await);
        // A reload that turns `verify_incoming` on.
        tls.set(settings(
            &pki,
            Some(pki.leaf(&[SERVER])),
            [true, false, false],
        ));
        assert!(!reaches(&addr, RpcTlsConfig::plain()).await);
        let client = settings(
            &pki,
            Some(pki.leaf(&["client.dc1.consul"])),
            [false, true, true],
        );
        assert!(reaches(&addr, client).await);
    }

    #[test]
    fn settings_that_cannot_work_are_refused_with_consuls_words() {
        let pki = Pki::new();
        let build = |ca: bool, cert: bool, vi: bool, vo: bool| {
            RpcTlsConfig::build(&RpcTlsSettings {
                ca: if ca { vec![pki.ca()] } else { vec![] },
                cert: cert.then(|| pki.leaf(&[SERVER])),
                verify_incoming: vi,
                verify_outgoing: vo,
                server_name: SERVER.to_owned(),
                ..Default::default()
            })
            .err()
            .map(|e| e.to_string())
        };
        assert_eq!(
            build(false, true, false, true).as_deref(),
            Some("VerifyOutgoing set, and no CA certificate provided!")
        );
        assert_eq!(
            build(false, true, true, false).as_deref(),
            Some("VerifyIncoming set but no CA certificates were provided")
        );
        assert!(build(true, false, true, false)
            .is_some_and(|e| e.starts_with("VerifyIncoming requires")));
        assert_eq!(build(true, false, false, true), None);
        assert_eq!(build(false, false, false, false), None);
    }
}
