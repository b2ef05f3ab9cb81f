//! `tls_cipher_suites`: the TLS 1.2 cipher suites an agent's TLS offers, by
//! Consul's names (`types.ConsulAgentTLSCipherSuites`).
//!
//! Consul accepts ten ECDHE suites. rustls implements the six with AES-GCM or
//! ChaCha20-Poly1305; the four CBC ones (`*_CBC_SHA`) are accepted, as in
//! Consul, but cannot be offered: the agent warns about them at start
//! (`RuntimeConfig::unapplied`), and a list of CBC suites alone leaves TLS
//! 1.2 with nothing to negotiate, so only TLS 1.3 is offered. As in Go, the
//! list does not touch TLS 1.3, whose suites are not configurable.

use rustls::crypto::ring::cipher_suite as ring;
use rustls::SupportedCipherSuite;

/// Consul's names of the suites it accepts, and rustls's suite when there is
/// one.
const SUITES: &[(&str, Option<SupportedCipherSuite>)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Some(ring::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Some(ring::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Some(ring::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Some(ring::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Some(ring::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Some(ring::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", None),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", None),
];

/// The names in a `tls_cipher_suites` value (blank: none, Go's defaults).
fn names(value: &str) -> impl Iterator<Item = &str> {
    value
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

/// Why a `tls_cipher_suites` value is refused, in Consul's words (the
/// caller prefixes `tls.<section>.tls_cipher_suites: `).
pub fn validate(value: &str, tls13_only: bool) -> Result<(), String> {
    if tls13_only {
        return Err("TLS 1.3 cipher suites are not configurable".to_owned());
    }
    let unknown: Vec<&str> = names(value)
        .filter(|n| !SUITES.iter().any(|(name, _)| name == n))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "invalid TLS cipher suites: no matching Consul Agent TLS cipher suite found for {}",
            unknown.join(",")
        ))
    }
}

/// The TLS 1.2 suites to offer for `value` (their order does not matter:
/// rustls follows the client's preference among them, where Go servers use
/// their own): `None` (rustls's defaults) when it names none.
pub fn tls12(value: Option<&str>) -> Option<Vec<SupportedCipherSuite>> {
    let value = value?;
    names(value).next()?;
    Some(
        names(value)
            .filter_map(|n| SUITES.iter().find(|(name, _)| *name == n))
            .filter_map(|(_, suite)| *suite)
            .collect(),
    )
}

/// What a TLS section's `tls_min_version` and `tls_cipher_suites` make of
/// rustls: the provider offering its TLS 1.3 suites and the TLS 1.2 ones
/// named (all of its defaults when none is named), and whether TLS 1.3 alone
/// is offered (a `TLSv1_3` minimum, or no TLS 1.2 suite left; rustls has
/// nothing below 1.2, so Consul's `TLSv1_0`/`TLSv1_1` minimums mean 1.2).
/// `Err` is a version name Consul does not know.
pub fn protocol(
    min_version: Option<&str>,
    suites: Option<&str>,
) -> Result<(rustls::crypto::CryptoProvider, bool), String> {
    let tls13_min = match min_version.unwrap_or_default() {
        "" | "TLS_AUTO" | "TLSv1_0" | "TLSv1_1" | "TLSv1_2" => false,
        "TLSv1_3" => true,
        other => return Err(other.to_owned()),
    };
    let mut provider = rustls::crypto::ring::default_provider();
    let Some(tls12) = tls12(suites) else {
        return Ok((provider, tls13_min));
    };
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13);
    let none = tls12.is_empty();
    provider.cipher_suites.extend(tls12);
    Ok((provider, tls13_min || none))
}

/// The suites `value` names that cannot be offered (the CBC ones).
pub fn unavailable(value: &str) -> Vec<&str> {
    names(value)
        .filter(|n| {
            SUITES
                .iter()
                .any(|(name, suite)| name == n && suite.is_none())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuls_names_map_to_the_suites_rustls_has() {
        let both = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA";
        assert_eq!(validate(both, false), Ok(()));
        assert_eq!(
            tls12(Some(both)),
            Some(vec![ring::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384])
        );
        assert_eq!(unavailable(both), ["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]);
        assert_eq!(tls12(None), None);
        assert_eq!(tls12(Some(" ")), None, "blank: the defaults");
        assert_eq!(
            validate("TLS_RSA_WITH_AES_128_GCM_SHA256,nope", false).unwrap_err(),
            "invalid TLS cipher suites: no matching Consul Agent TLS cipher suite found for TLS_RSA_WITH_AES_128_GCM_SHA256,nope"
        );
        assert_eq!(
            validate("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", true).unwrap_err(),
            "TLS 1.3 cipher suites are not configurable"
        );
    }
}
