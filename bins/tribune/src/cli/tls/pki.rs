//! Key and certificate generation for `tls ca create` and `tls cert create`.
//!
//! What Consul's `tlsutil` makes, so the files work with Consul and with Tribune
//! alike: ECDSA P-256 keys written as SEC1 `EC PRIVATE KEY` PEM (what Go's
//! `x509.MarshalECPrivateKey` writes, curve included), 128-bit random serials,
//! and Consul's key identifiers: the SHA-256 of the public key's
//! SubjectPublicKeyInfo, as colon-separated hex *text* (not the RFC 5280
//! method; any stable identifier is allowed, and matching Consul keeps a chain
//! of Consul-made and Tribune-made certificates consistent). The CA's subject
//! is only its common name: Consul also writes its company's postal address,
//! which is not ours to claim.
//!
//! ring, under rcgen, reads and writes PKCS#8 only, so keys are converted here:
//! written keys are unwrapped from PKCS#8 into SEC1, and signing keys read as
//! SEC1 or PKCS#1 are wrapped into PKCS#8 before ring sees them.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use yasna::models::ObjectIdentifier;
use yasna::Tag;

/// id-ecPublicKey (RFC 5480).
const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
/// rsaEncryption (RFC 8017).
const RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113_549, 1, 1, 1];

/// A certificate and its private key, both PEM.
pub(super) struct Generated {
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
}

/// What `tls ca create` asks for.
pub(super) struct CaOptions<'a> {
    /// `-common-name`; empty for Consul's `Consul Agent CA <serial>`.
    pub(super) common_name: &'a str,
    pub(super) days: i64,
    /// DNS name constraints (`-name-constraint`); none when empty.
    pub(super) permitted_dns: Vec<String>,
    /// `spiffe://<cluster-id>.<domain>` as the CA's URI, when `-cluster-id` is given.
    pub(super) spiffe: Option<String>,
    pub(super) now: OffsetDateTime,
}

/// What `tls cert create` asks for.
pub(super) struct CertOptions {
    /// The common name, e.g. `server.dc1.consul`.
    pub(super) name: String,
    pub(super) days: i64,
    pub(super) dns_names: Vec<String>,
    pub(super) ip_addresses: Vec<IpAddr>,
    pub(super) usages: Vec<rcgen::ExtendedKeyUsagePurpose>,
    pub(super) now: OffsetDateTime,
}

/// A self-signed CA and its new key.
pub(super) fn generate_ca(opts: &CaOptions<'_>) -> Result<Generated> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let serial = random_serial();
    let mut params = rcgen::CertificateParams::default();
    let name = if opts.common_name.is_empty() {
        format!("Consul Agent CA {serial}")
    } else {
        opts.common_name.to_owned()
    };
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, dn_string(&name)?);
    params.serial_number = Some(serial_number(serial));
    (params.not_before, params.not_after) = validity(opts.now, opts.days)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(key_id(&key));
    // A self-signed certificate's authority key identifier is its own; Go writes it.
    params.use_authority_key_identifier_extension = true;
    if !opts.permitted_dns.is_empty() {
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: opts
                .permitted_dns
                .iter()
                .map(|d| rcgen::GeneralSubtree::DnsName(d.clone()))
                .collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    if let Some(uri) = &opts.spiffe {
        params.subject_alt_names = vec![rcgen::SanType::URI(
            uri.as_str()
                .try_into()
                .map_err(|_| anyhow!("invalid CA URI {uri:?}"))?,
        )];
    }
    let cert = params.self_signed(&key)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: sec1_pem(&key)?,
    })
}

/// A new key and a certificate for it signed by the CA in `ca_pem` with the key
/// in `ca_key_pem`.
pub(super) fn generate_cert(
    ca_pem: &str,
    ca_key_pem: &str,
    opts: &CertOptions,
) -> Result<Generated> {
    let ca_key = signing_key(ca_key_pem)?;
    let ca_der = first_certificate(ca_pem)?;
    // rcgen signs for an issuer it has built itself: rebuild the CA from its
    // subject and key identifier, which is all a child certificate refers to.
    let issuer = rcgen::CertificateParams::from_ca_cert_der(&ca_der)
        .map_err(|e| anyhow!("error parsing CA certificate: {e}"))?
        .self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, dn_string(&opts.name)?);
    params.serial_number = Some(serial_number(random_serial()));
    (params.not_before, params.not_after) = validity(opts.now, opts.days)?;
    // `ExplicitNoCa` writes basic constraints (CA: false) and the subject key
    // identifier, as Go's `BasicConstraintsValid` with `SubjectKeyId` does.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = opts.usages.clone();
    params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(key_id(&key));
    params.use_authority_key_identifier_extension = true;
    let mut sans = Vec::new();
    for name in &opts.dns_names {
        let ia5 = name
            .as_str()
            .try_into()
            .map_err(|_| anyhow!("invalid DNS name {name:?}"))?;
        sans.push(rcgen::SanType::DnsName(ia5));
    }
    sans.extend(
        opts.ip_addresses
            .iter()
            .map(|ip| rcgen::SanType::IpAddress(*ip)),
    );
    params.subject_alt_names = sans;
    let cert = params.signed_by(&key, &issuer, &ca_key)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: sec1_pem(&key)?,
    })
}

/// Checks that `cert_pem` chains to `ca_pem` and is valid for the DNS name
/// `name` at `now` (Consul's `tlsutil.Verify`), name constraints included. A CA
/// key that does not match the CA certificate fails here.
pub(super) fn verify(ca_pem: &str, cert_pem: &str, name: &str, now: OffsetDateTime) -> Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(first_certificate(ca_pem)?)
        .map_err(|e| anyhow!("failed to parse root certificate: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()?;
    let server_name =
        ServerName::try_from(name.to_owned()).map_err(|_| anyhow!("invalid DNS name {name:?}"))?;
    let seconds = u64::try_from(now.unix_timestamp()).context("time before 1970")?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &first_certificate(cert_pem)?,
        &[],
        &server_name,
        &[],
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
    )
    .map_err(|e| anyhow!("the new certificate does not verify against the CA: {e}"))?;
    Ok(())
}

/// The first certificate of a PEM file, with Consul's message when there is none.
fn first_certificate(pem: &str) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => anyhow!("no PEM-encoded data found"),
        other => anyhow!("reading the certificate: {other}"),
    })
}

/// Consul's key identifier: SHA-256 of the SubjectPublicKeyInfo as `ab:cd:...` text.
fn key_id(key: &rcgen::KeyPair) -> Vec<u8> {
    let digest = Sha256::digest(key.public_key_der());
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex.join(":").into_bytes()
}

/// A random serial below 2^128, as Consul's `GenerateSerialNumber` (never 0,
/// which validators may refuse).
fn random_serial() -> u128 {
    loop {
        let serial: u128 = rand::random();
        if serial != 0 {
            return serial;
        }
    }
}

fn serial_number(serial: u128) -> rcgen::SerialNumber {
    rcgen::SerialNumber::from(serial.to_be_bytes().to_vec())
}

/// Valid from `now` for `days` days (Go's `time.Now().AddDate(0, 0, days)`).
fn validity(now: OffsetDateTime, days: i64) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let now = now.replace_nanosecond(0)?;
    let end = i32::try_from(days)
        .ok()
        .and_then(|days| time::Duration::DAY.checked_mul(days))
        .and_then(|d| now.checked_add(d))
        .filter(|end| end.year() <= 9999)
        .ok_or_else(|| anyhow!("-days {days} is out of range"))?;
    Ok((now, end))
}

/// A name attribute as Go writes it: PrintableString when every character
/// allows it, UTF8String otherwise.
fn dn_string(text: &str) -> Result<rcgen::DnValue> {
    Ok(match rcgen::PrintableString::try_from(text) {
        Ok(printable) => rcgen::DnValue::PrintableString(printable),
        Err(_) => rcgen::DnValue::Utf8String(text.to_owned()),
    })
}

/// A PEM block, lines of 64 characters.
fn pem_block(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The fields of an ECPrivateKey (RFC 5915).
struct EcPrivateKey {
    private: Vec<u8>,
    curve: Option<ObjectIdentifier>,
    /// The public point (a BIT STRING's bytes).
    public: Option<Vec<u8>>,
}

fn parse_ec_private_key(der: &[u8]) -> Result<EcPrivateKey, yasna::ASN1Error> {
    yasna::parse_der(der, |reader| {
        reader.read_sequence(|seq| {
            let version = seq.next().read_u8()?;
            if version != 1 {
                return Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid));
            }
            let private = seq.next().read_bytes()?;
            let curve = seq.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_oid()))?;
            let public = seq.read_optional(|r| {
                r.read_tagged(Tag::context(1), |r| r.read_bitvec_bytes().map(|(b, _)| b))
            })?;
            Ok(EcPrivateKey {
                private,
                curve,
                public,
            })
        })
    })
}

/// A key generated by ring (PKCS#8) as SEC1 `EC PRIVATE KEY` PEM with its curve,
/// as Go writes it and as Go's `x509.ParseECPrivateKey` needs it.
fn sec1_pem(key: &rcgen::KeyPair) -> Result<String> {
    let malformed = |_| anyhow!("malformed PKCS#8 key from the key generator");
    let (curve, inner) = yasna::parse_der(&key.serialize_der(), |reader| {
        reader.read_sequence(|seq| {
            seq.next().read_u8()?;
            let curve = seq.next().read_sequence(|alg| {
                alg.next().read_oid()?;
                alg.next().read_oid()
            })?;
            Ok((curve, seq.next().read_bytes()?))
        })
    })
    .map_err(malformed)?;
    let ec = parse_ec_private_key(&inner).map_err(malformed)?;
    let public = ec
        .public
        .ok_or_else(|| anyhow!("generated key has no public key"))?;
    let der = yasna::construct_der(|writer| {
        writer.write_sequence(|seq| {
            seq.next().write_u8(1);
            seq.next().write_bytes(&ec.private);
            seq.next()
                .write_tagged(Tag::context(0), |w| w.write_oid(&curve));
            seq.next().write_tagged(Tag::context(1), |w| {
                w.write_bitvec_bytes(&public, public.len() * 8);
            });
        });
    });
    Ok(pem_block("EC PRIVATE KEY", &der))
}

/// PKCS#8 around a raw key (RFC 5208): the form ring reads.
fn wrap_pkcs8(algorithm: &[u64], curve: Option<&ObjectIdentifier>, key: &[u8]) -> Vec<u8> {
    yasna::construct_der(|writer| {
        writer.write_sequence(|seq| {
            seq.next().write_u8(0);
            seq.next().write_sequence(|alg| {
                alg.next()
                    .write_oid(&ObjectIdentifier::from_slice(algorithm));
                match curve {
                    Some(curve) => alg.next().write_oid(curve),
                    None => alg.next().write_null(),
                }
            });
            seq.next().write_bytes(key);
        });
    })
}

/// The CA's signing key from PEM: SEC1 (`EC PRIVATE KEY`, what Consul writes),
/// PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`), as Consul's
/// `ParseSigner` accepts.
fn signing_key(pem: &str) -> Result<rcgen::KeyPair> {
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => anyhow!("no PEM-encoded data found"),
        other => anyhow!("reading the CA key: {other}"),
    })?;
    let pkcs8 = match &key {
        PrivateKeyDer::Pkcs8(der) => der.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(der) => wrap_pkcs8(RSA_ENCRYPTION, None, der.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(der) => {
            let ec = parse_ec_private_key(der.secret_sec1_der())
                .map_err(|e| anyhow!("malformed EC private key: {e}"))?;
            let Some(curve) = ec.curve else {
                bail!("the EC private key does not name its curve");
            };
            if ec.public.is_none() {
                bail!("the EC private key does not include its public key");
            }
            wrap_pkcs8(EC_PUBLIC_KEY, Some(&curve), der.secret_sec1_der())
        }
        _ => bail!("unknown PEM block type for signing key"),
    };
    rcgen::KeyPair::try_from(pkcs8.as_slice()).map_err(|e| anyhow!("unsupported signing key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn ca(permitted: &[&str]) -> Generated {
        generate_ca(&CaOptions {
            common_name: "",
            days: 1825,
            permitted_dns: permitted.iter().map(|s| (*s).to_owned()).collect(),
            spiffe: None,
            now: now(),
        })
        .unwrap()
    }

    fn server_opts(extra_dns: &[&str]) -> CertOptions {
        let mut dns_names: Vec<String> = extra_dns.iter().map(|s| (*s).to_owned()).collect();
        dns_names.extend(["server.dc1.consul".to_owned(), "localhost".to_owned()]);
        CertOptions {
            name: "server.dc1.consul".into(),
            days: 365,
            dns_names,
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            usages: vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ],
            now: now(),
        }
    }

    #[test]
    fn written_keys_are_sec1_with_their_curve_and_read_back() {
        let ca = ca(&[]);
        assert!(ca.key_pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        let key = PrivateKeyDer::from_pem_slice(ca.key_pem.as_bytes()).unwrap();
        let PrivateKeyDer::Sec1(sec1) = key else {
            panic!("not SEC1")
        };
        let ec = parse_ec_private_key(sec1.secret_sec1_der()).unwrap();
        assert_eq!(
            ec.curve,
            Some(ObjectIdentifier::from_slice(&[1, 2, 840, 10045, 3, 1, 7]))
        );
        assert_eq!(ec.private.len(), 32);
        assert_eq!(ec.public.as_ref().map(Vec::len), Some(65));
        // The key signs again after the round trip, with the same public key.
        let again = signing_key(&ca.key_pem).unwrap();
        assert_eq!(ec.public.unwrap(), again.public_key_raw());
    }

    #[test]
    fn a_certificate_chains_to_its_ca_and_names_its_hosts() {
        let ca = ca(&[]);
        let cert =
            generate_cert(&ca.cert_pem, &ca.key_pem, &server_opts(&["extra.example"])).unwrap();
        verify(&ca.cert_pem, &cert.cert_pem, "server.dc1.consul", now()).unwrap();
        verify(&ca.cert_pem, &cert.cert_pem, "extra.example", now()).unwrap();
        verify(&ca.cert_pem, &cert.cert_pem, "localhost", now()).unwrap();
        assert!(verify(&ca.cert_pem, &cert.cert_pem, "elsewhere.example", now()).is_err());
        // Not valid before it was made, nor after its days.
        let year = time::Duration::days(366);
        assert!(verify(&ca.cert_pem, &cert.cert_pem, "localhost", now() + year).is_err());
        // Another CA does not vouch for it.
        let other = self::ca(&[]);
        assert!(verify(&other.cert_pem, &cert.cert_pem, "localhost", now()).is_err());
    }

    #[test]
    fn a_mismatched_ca_key_is_caught_by_the_check() {
        let (ca, other) = (ca(&[]), ca(&[]));
        let cert = generate_cert(&ca.cert_pem, &other.key_pem, &server_opts(&[])).unwrap();
        assert!(verify(&ca.cert_pem, &cert.cert_pem, "server.dc1.consul", now()).is_err());
    }

    #[test]
    fn name_constraints_hold_for_the_names_they_permit_only() {
        let ca = ca(&["consul", "localhost"]);
        let ok = generate_cert(&ca.cert_pem, &ca.key_pem, &server_opts(&[])).unwrap();
        verify(&ca.cert_pem, &ok.cert_pem, "server.dc1.consul", now()).unwrap();
        let outside =
            generate_cert(&ca.cert_pem, &ca.key_pem, &server_opts(&["evil.example"])).unwrap();
        assert!(verify(&ca.cert_pem, &outside.cert_pem, "server.dc1.consul", now()).is_err());
    }

    #[test]
    fn signing_keys_in_every_pem_form_consul_reads() {
        let ca = ca(&[]);
        // PKCS#8, as rcgen and `openssl genpkey` write it.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pkcs8 = signing_key(&key.serialize_pem()).unwrap();
        assert_eq!(pkcs8.public_key_raw(), key.public_key_raw());
        // Junk and other blocks get Consul's words.
        let junk = signing_key("not pem").err().unwrap().to_string();
        assert_eq!(junk, "no PEM-encoded data found");
        assert!(signing_key(&ca.cert_pem).is_err());
    }

    #[test]
    fn days_out_of_range_are_refused() {
        assert!(validity(now(), 4_000_000).is_err());
        let err = validity(now(), i64::MAX).unwrap_err().to_string();
        assert_eq!(err, format!("-days {} is out of range", i64::MAX));
        assert!(validity(now(), 365).is_ok());
    }
}
