//! Services and checks registered through the HTTP API (and maintenance mode) survive
//! a restart: each is written to the agent's data directory before the registration
//! is acknowledged, and loaded back at start after the config-file definitions (which
//! win when both define the same ID), as Consul's `data-dir/services` and
//! `data-dir/checks` do.
//!
//! One JSON file per service or check, named by the SHA-256 of its ID (IDs may contain
//! any character), written to a temporary file, fsynced and renamed, so a crash leaves
//! either the old or the new file, never half of one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tribune_types::model::{CheckDefinition, Service};

/// A persisted check: its definition, and whether it is a maintenance-mode check
/// (whose catalog type differs from what the definition says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PersistedCheck {
    pub(crate) definition: CheckDefinition,
    #[serde(default)]
    pub(crate) maintenance: bool,
}

/// A persistence failure: the registration is refused rather than acknowledged and
/// then forgotten on restart.
#[derive(Debug, thiserror::Error)]
#[error("persisting {what} in {path}: {source}")]
pub struct PersistError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The two directories under the agent's data dir.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    services: PathBuf,
    checks: PathBuf,
}

fn file_name(id: &str) -> String {
    format!("{}.json", hex::encode(Sha256::digest(id.as_bytes())))
}

fn write_atomic(
    dir: &Path,
    name: &str,
    body: &[u8],
    what: &'static str,
) -> Result<(), PersistError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PersistError { what, path, source }
    };
    fs::create_dir_all(dir).map_err(err(dir))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    let mut f = fs::File::create(&tmp).map_err(err(&tmp))?;
    f.write_all(body).map_err(err(&tmp))?;
    f.sync_all().map_err(err(&tmp))?;
    fs::rename(&tmp, &dest).map_err(err(&dest))?;
    // The rename is only durable once the directory entry is.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir))
}

fn remove(dir: &Path, id: &str, what: &'static str) -> Result<(), PersistError> {
    let path = dir.join(file_name(id));
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PersistError {
            what,
            path,
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Every parseable JSON file in `dir`; unreadable ones are logged and skipped (one
/// corrupt file must not keep the agent from starting).
fn load_all<T: for<'de> Deserialize<'de>>(dir: &Path) -> Vec<T> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        match fs::read(&path).map(|b| serde_json::from_slice::<T>(&b)) {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(err)) => {
                tracing::warn!(path = %path.display(), error = %err, "skipping unreadable persisted definition")
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "skipping unreadable persisted definition")
            }
        }
    }
    out
}

impl Store {
    /// Persistence under `data_dir`.
    pub(crate) fn new(data_dir: &Path) -> Self {
        Store {
            services: data_dir.join("services"),
            checks: data_dir.join("checks"),
        }
    }

    pub(crate) fn save_service(&self, svc: &Service) -> Result<(), PersistError> {
        let body = serde_json::to_vec(svc).unwrap_or_default();
        write_atomic(
            &self.services,
            &file_name(svc.id.as_str()),
            &body,
            "service",
        )
    }

    pub(crate) fn remove_service(&self, id: &str) -> Result<(), PersistError> {
        remove(&self.services, id, "service")
    }

    pub(crate) fn save_check(&self, check: &PersistedCheck) -> Result<(), PersistError> {
        let body = serde_json::to_vec(check).unwrap_or_default();
        let name = file_name(check.definition.id.as_str());
        write_atomic(&self.checks, &name, &body, "check")
    }

    pub(crate) fn remove_check(&self, id: &str) -> Result<(), PersistError> {
        remove(&self.checks, id, "check")
    }

    pub(crate) fn services(&self) -> Vec<Service> {
        load_all(&self.services)
    }

    pub(crate) fn checks(&self) -> Vec<PersistedCheck> {
        load_all(&self.checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_replace_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let svc = Service {
            id: "web/1 ü".into(),
            service: "web".into(),
            port: 80,
            ..Default::default()
        };
        store.save_service(&svc).unwrap();
        let mut svc2 = svc.clone();
        svc2.port = 81;
        store.save_service(&svc2).unwrap();
        assert_eq!(store.services(), vec![svc2]);
        let check = PersistedCheck {
            definition: CheckDefinition {
                id: "c".into(),
                name: "c".into(),
                ..Default::default()
            },
            maintenance: true,
        };
        store.save_check(&check).unwrap();
        assert_eq!(store.checks(), vec![check]);
        // A corrupt file is skipped, not fatal.
        fs::write(dir.path().join("checks/zz.json"), b"{not json").unwrap();
        assert_eq!(store.checks().len(), 1);
        store.remove_service("web/1 ü").unwrap();
        store.remove_check("c").unwrap();
        store.remove_check("never-there").unwrap();
        assert!(store.services().is_empty());
        assert!(store.checks().is_empty());
    }
}
