//! `auto_reload_config`: the agent reloads when a configuration file it read,
//! or a TLS certificate, key or CA file the configuration names, changes, as
//! Consul's file watcher does.
//!
//! The files are polled (size, modification time and inode, once per
//! interval) rather than watched through inotify: a few `stat`s a second cost
//! nothing, and a file replaced by rename (how Vault agent and most tools
//! write certificates) is seen like any other change. A change is acted on
//! once the files have stayed the same for one more interval, so a file
//! caught half-written is not loaded, and a burst of changes (a certificate,
//! then its key) makes one reload, as Consul's coalescing watcher does.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tribune_agent::config::RuntimeConfig;

/// How often the files are looked at.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// What a file looked like at one poll (`None`: it could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// The files an agent reloads for, and what they looked like.
#[derive(Debug)]
pub struct Watched {
    files: Vec<PathBuf>,
    last: Vec<Option<Stamp>>,
    /// A change was seen and the files have not yet been quiet for an interval.
    pending: bool,
}

impl Watched {
    /// The files `cfg` makes the agent watch, or `None` without
    /// `auto_reload_config`.
    pub fn of(cfg: &RuntimeConfig) -> Option<Watched> {
        Self::after(None, cfg)
    }

    /// The files to watch once `cfg` is in force, `previous` having watched
    /// until then: files it knew keep what it last saw, so an edit made while
    /// the reload ran is still a change at the next poll.
    pub fn after(previous: Option<Watched>, cfg: &RuntimeConfig) -> Option<Watched> {
        if !cfg.auto_reload_config {
            return None;
        }
        let t = &cfg.tls;
        let tls = [&t.defaults, &t.internal_rpc, &t.https, &t.grpc]
            .into_iter()
            .flat_map(|s| [&s.ca_file, &s.cert_file, &s.key_file])
            .flatten();
        let mut files: Vec<PathBuf> = cfg.config_files.iter().chain(tls).cloned().collect();
        files.sort();
        files.dedup();
        let next = Self::files(files);
        Some(match previous {
            Some(previous) => next.keeping(&previous),
            None => next,
        })
    }

    /// This watch, with what `previous` last saw of the files both watch.
    fn keeping(mut self, previous: &Watched) -> Watched {
        for (file, seen) in self.files.iter().zip(self.last.iter_mut()) {
            if let Some(i) = previous.files.iter().position(|f| f == file) {
                seen.clone_from(&previous.last[i]);
            }
        }
        self
    }

    fn files(files: Vec<PathBuf>) -> Watched {
        let last = files.iter().map(|f| stamp(f)).collect();
        Watched {
            files,
            last,
            pending: false,
        }
    }

    /// Looks at the files again; true when the agent should reload now: they
    /// changed since an earlier poll and have not changed since the last one.
    pub fn poll(&mut self) -> bool {
        let now: Vec<Option<Stamp>> = self.files.iter().map(|f| stamp(f)).collect();
        if now != self.last {
            self.last = now;
            self.pending = true;
            return false;
        }
        std::mem::take(&mut self.pending)
    }
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reloads_once_the_files_have_been_quiet_for_an_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.pem"));
        std::fs::write(&a, "{}").unwrap();
        std::fs::write(&b, "x").unwrap();
        let mut w = Watched::files(vec![a.clone(), b.clone()]);
        assert!(!w.poll(), "nothing changed");
        std::fs::write(&a, r#"{"node_name": "n"}"#).unwrap();
        assert!(!w.poll(), "changed: wait for one quiet interval");
        // A second file changing meanwhile folds into the same reload.
        std::fs::write(&b, "xy").unwrap();
        assert!(!w.poll());
        assert!(w.poll(), "quiet: reload");
        assert!(!w.poll(), "once");
        // Replaced by rename, and removed, are changes too.
        let tmp = dir.path().join("b.tmp");
        std::fs::write(&tmp, "xy").unwrap();
        std::fs::rename(&tmp, &b).unwrap();
        assert!(!w.poll());
        assert!(w.poll());
        std::fs::remove_file(&b).unwrap();
        assert!(!w.poll());
        assert!(w.poll());
    }

    #[test]
    fn an_edit_made_during_a_reload_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        std::fs::write(&file, "{}").unwrap();
        let w = Watched::files(vec![file.clone()]);
        // Edited after the reload read it, before the watch was renewed.
        std::fs::write(&file, r#"{"node_name": "n"}"#).unwrap();
        let mut next = Watched::files(vec![file.clone()]).keeping(&w);
        assert!(!next.poll(), "seen as a change");
        assert!(next.poll(), "and reloaded");
    }
}
