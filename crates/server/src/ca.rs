//! The built-in Connect CA: one self-signed ECDSA P-256 root, generated once by the
//! leader and stored through raft (generation is random, so it never runs in apply).

use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tribune_types::model::CaRoot;

/// Consul's default `leaf_cert_ttl`.
pub(crate) const LEAF_TTL: time::Duration = time::Duration::hours(72);

/// Why the CA root could not be generated, or a leaf signed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The public key sent for a leaf is not an uncompressed P-256 point.
    #[error("invalid public key for a leaf certificate")]
    PublicKey,
    /// Key or certificate generation failed.
    #[error("generating the Connect CA root: {0}")]
    Generate(#[from] rcgen::Error),
    /// Time formatting failed.
    #[error("formatting CA validity: {0}")]
    Time(#[from] time::error::Format),
    /// The leaf's lifetime runs past the end of representable time. The HTTP API
    /// caps `LeafCertTTL` below 8760h, but the stored value reaches signing
    /// through raft and snapshots, so signing checks it too.
    #[error("leaf certificate lifetime {0} is out of range")]
    Lifetime(time::Duration),
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The root's subject and extensions, a function of its cluster ID and serial so
/// that a server can rebuild the issuer of the leaves it signs from the stored root.
fn root_params(cluster_id: &str, serial: u64) -> Result<rcgen::CertificateParams, CaError> {
    let trust_domain = format!("{cluster_id}.consul");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!(
            "pri-{:x}.consul.ca.{}",
            serial & 0xffff_ffff,
            &cluster_id[..8.min(cluster_id.len())]
        ),
    );
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![rcgen::SanType::URI(
        format!("spiffe://{trust_domain}").try_into()?,
    )];
    Ok(params)
}

/// Generates a root for `cluster_id` (the trust domain is `<cluster_id>.consul`).
pub(crate) fn generate_root(cluster_id: &str) -> Result<CaRoot, CaError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let trust_domain = format!("{cluster_id}.consul");
    let serial: u64 = rand::random::<u64>() >> 1;
    let mut params = root_params(cluster_id, serial)?;
    let now = OffsetDateTime::now_utc();
    let not_before = now - time::Duration::minutes(1);
    let not_after = now + time::Duration::days(3650);
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(rcgen::SerialNumber::from(serial.to_be_bytes().to_vec()));
    let cert = params.self_signed(&key)?;
    let key_id = colon_hex(&Sha256::digest(key.public_key_der())[..20]);
    Ok(CaRoot {
        id: key_id.clone(),
        name: "Consul CA Primary Cert".into(),
        serial_number: serial,
        signing_key_id: key_id,
        not_before: not_before.format(&Rfc3339)?,
        not_after: not_after.format(&Rfc3339)?,
        root_cert: cert.pem(),
        private_key: key.serialize_pem(),
        active: true,
        trust_domain,
        raft: Default::default(),
    })
}

/// A P-256 public key as its uncompressed point, for signing over a key pair the
/// agent keeps.
struct P256Point<'a>(&'a [u8]);

impl rcgen::PublicKeyData for P256Point<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// Signs a leaf for `service` in `datacenter` over `public_key` with `root`
/// (which must carry its private key): Consul's SPIFFE service ID as the URI SAN,
/// valid from a minute ago for `ttl` (the CA configuration's `LeafCertTTL`,
/// [`LEAF_TTL`] by default), for TLS servers and clients.
pub(crate) fn sign_leaf(
    root: &CaRoot,
    datacenter: &str,
    service: &str,
    public_key: &[u8],
    index: u64,
    ttl: time::Duration,
) -> Result<tribune_types::model::operator::IssuedLeaf, CaError> {
    // An uncompressed SEC1 point: 0x04, then X and Y.
    if public_key.len() != 65 || public_key[0] != 0x04 {
        return Err(CaError::PublicKey);
    }
    let ca_key = rcgen::KeyPair::from_pem(&root.private_key)?;
    let cluster_id = root.trust_domain.trim_end_matches(".consul");
    let issuer = root_params(cluster_id, root.serial_number)?.self_signed(&ca_key)?;
    let service_uri = format!(
        "spiffe://{}/ns/default/dc/{datacenter}/svc/{service}",
        root.trust_domain
    );
    let serial: u64 = rand::random::<u64>() >> 1;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, service);
    params.subject_alt_names = vec![rcgen::SanType::URI(service_uri.clone().try_into()?)];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = OffsetDateTime::now_utc();
    let not_before = now - time::Duration::minutes(1);
    let not_after = now.checked_add(ttl).ok_or(CaError::Lifetime(ttl))?;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(rcgen::SerialNumber::from(serial.to_be_bytes().to_vec()));
    let cert = params.signed_by(&P256Point(public_key), &issuer, &ca_key)?;
    Ok(tribune_types::model::operator::IssuedLeaf {
        serial_number: colon_hex(&serial.to_be_bytes()),
        cert_pem: cert.pem(),
        service: service.to_owned(),
        service_uri,
        valid_after: not_before.format(&Rfc3339)?,
        valid_before: not_after.format(&Rfc3339)?,
        index,
        lifetime: std::time::Duration::from_secs(ttl.whole_seconds().unsigned_abs()),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn generates_a_root() {
        let root = super::generate_root("11111111-2222-3333-4444-555555555555").unwrap();
        assert!(root.root_cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            root.trust_domain,
            "11111111-2222-3333-4444-555555555555.consul"
        );
        assert!(root.active);
        assert_eq!(root.id.split(':').count(), 20);
    }

    #[test]
    fn signs_leaves_over_a_foreign_public_key_and_refuses_junk() {
        let root = super::generate_root("11111111-2222-3333-4444-555555555555").unwrap();
        let agent_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = super::sign_leaf(
            &root,
            "dc1",
            "web",
            agent_key.public_key_raw(),
            7,
            super::LEAF_TTL,
        )
        .unwrap();
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            leaf.service_uri,
            "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web"
        );
        assert_eq!(leaf.index, 7);
        assert!(leaf.valid_after < leaf.valid_before);
        // The leaf verifies against the root as a TLS client certificate.
        let der = |pem: &str| {
            use base64::Engine as _;
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap();
            rustls::pki_types::CertificateDer::from(bytes)
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(&root.root_cert)).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .unwrap();
        verifier
            .verify_client_cert(
                &der(&leaf.cert_pem),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("the leaf chains to the root");
        assert!(super::sign_leaf(&root, "dc1", "web", &[1, 2, 3], 7, super::LEAF_TTL).is_err());
        // A stored lifetime too long to represent is an error, not a panic.
        let far = time::Duration::seconds(i64::MAX);
        assert!(matches!(
            super::sign_leaf(&root, "dc1", "web", agent_key.public_key_raw(), 7, far),
            Err(super::CaError::Lifetime(_))
        ));
    }
}
