//! Connect leaf certificates, Consul's agent leaf cache: the agent generates each
//! service's P-256 key pair itself, has a server sign the public key with the
//! active CA root, and serves the same leaf until half its lifetime has passed.

use crate::agent::{backend_err, Agent};
use std::time::{Duration, Instant};
use tribune_http_api::{BackendError, LeafCert};
use tribune_types::model::operator::{OperatorReply, OperatorRequest};

/// A cached leaf and when to replace it.
#[derive(Debug, Clone)]
pub(crate) struct CachedLeaf {
    leaf: LeafCert,
    renew_at: Instant,
}

impl Agent {
    /// The current leaf of `service`; a new one once the cached leaf is half
    /// spent. Blocking: while the leaf's index is not above `min_index`, waits for
    /// the renewal, up to `max_wait`.
    pub(crate) async fn leaf(
        &self,
        service: &str,
        min_index: u64,
        max_wait: Duration,
    ) -> Result<LeafCert, BackendError> {
        let deadline = Instant::now() + max_wait;
        loop {
            let cached = self.leaves.lock().get(service).cloned();
            let current = match cached {
                Some(c) if Instant::now() < c.renew_at => c,
                _ => {
                    let fresh = self.sign_leaf(service).await?;
                    let mut leaves = self.leaves.lock();
                    // Leaves due for renewal are re-signed on their next request
                    // anyway; dropping them keeps names asked for once from
                    // piling up.
                    let now = Instant::now();
                    leaves.retain(|_, c| now < c.renew_at);
                    leaves.insert(service.to_owned(), fresh.clone());
                    fresh
                }
            };
            if min_index == 0 || current.leaf.issued.index > min_index {
                return Ok(current.leaf);
            }
            let wake = current.renew_at.min(deadline);
            if Instant::now() >= deadline {
                return Ok(current.leaf);
            }
            tokio::time::sleep_until(wake.into()).await;
        }
    }

    async fn sign_leaf(&self, service: &str) -> Result<CachedLeaf, BackendError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| BackendError::Unavailable(format!("generating a leaf key: {e}")))?;
        let req = OperatorRequest::SignLeaf {
            service: service.to_owned(),
            public_key: key.public_key_raw().to_vec(),
        };
        let OperatorReply::Leaf(issued) = self.servers.operator(req).await.map_err(backend_err)?
        else {
            return Err(BackendError::Unavailable(
                "unexpected reply to a leaf signing".into(),
            ));
        };
        let renew_at = Instant::now() + issued.lifetime / 2;
        Ok(CachedLeaf {
            leaf: LeafCert {
                issued,
                private_key_pem: key.serialize_pem(),
            },
            renew_at,
        })
    }
}
