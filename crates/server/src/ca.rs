//! The built-in Connect CA: one self-signed ECDSA P-256 root, generated once by the
//! leader and stored through raft (generation is random, so it never runs in apply).

use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tribune_types::model::CaRoot;

/// Why the CA root could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Key or certificate generation failed.
    #[error("generating the Connect CA root: {0}")]
    Generate(#[from] rcgen::Error),
    /// Time formatting failed.
    #[error("formatting CA validity: {0}")]
    Time(#[from] time::error::Format),
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Generates a root for `cluster_id` (the trust domain is `<cluster_id>.consul`).
pub(crate) fn generate_root(cluster_id: &str) -> Result<CaRoot, CaError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let trust_domain = format!("{cluster_id}.consul");
    let serial: u64 = rand::random::<u64>() >> 1;
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
}
