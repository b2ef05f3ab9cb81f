//! The member snapshot: who was alive in the pool, kept in a file so that a restarted
//! node finds its way back without being told where (Serf's `serf/local.snapshot`).
//!
//! The file is small JSON — `{"left": false, "members": {"<name>": "<ip:port>"}}` —
//! rewritten whole (temporary file, fsync, rename) at most every
//! [`FLUSH_INTERVAL`] while members change, rather than Serf's append-only log: a pool
//! of thousands is a few hundred kilobytes, and a whole-file rewrite needs no
//! compaction. Members are added on join/update and removed when they leave, fail or
//! are reaped, as Serf's snapshotter does; a failed member that comes back is added
//! again when it rejoins.
//!
//! `left` records a graceful leave. On start, a node whose last run ended in a leave
//! stays alone unless told to rejoin anyway (Consul's `-rejoin`,
//! `rejoin_after_leave`), because an operator who made it leave meant it; any other
//! previous run (a crash, `kill -9`, a shutdown without leave) rejoins the members it
//! knew.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tribune_types::model::Member;

use crate::core::{Event, MemberEventKind};
use crate::error::GossipError;

/// How often a changed member list is written out. A crash loses at most this much
/// membership history, which costs nothing but a member the rejoin does not try.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotFile {
    /// The last run ended with a graceful leave.
    #[serde(default)]
    left: bool,
    /// Other members known alive, name → `ip:port`.
    #[serde(default)]
    members: BTreeMap<String, String>,
}

/// What a previous run left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// It ended with a graceful leave.
    pub left: bool,
    /// The members it knew alive, as `ip:port`.
    pub addrs: Vec<String>,
}

impl Previous {
    /// The addresses to rejoin: none after a leave unless `rejoin_after_leave`.
    pub fn rejoin_addrs(&self, rejoin_after_leave: bool) -> &[String] {
        if self.left && !rejoin_after_leave {
            &[]
        } else {
            &self.addrs
        }
    }
}

fn file_error(path: &Path, reason: impl ToString) -> GossipError {
    GossipError::SnapshotFile {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// `ip:port` of a member (brackets around an IPv6 address), the form a join takes.
pub fn member_addr(member: &Member) -> String {
    match member.addr.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, member.port).to_string(),
        Err(_) => format!("{}:{}", member.addr, member.port),
    }
}

/// Reads the snapshot at `path`; `None` when there is none (a first start).
pub fn load(path: &Path) -> Result<Option<Previous>, GossipError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path, e)),
    };
    let file: SnapshotFile = serde_json::from_str(&text).map_err(|e| file_error(path, e))?;
    Ok(Some(Previous {
        left: file.left,
        addrs: file.members.into_values().collect(),
    }))
}

/// Keeps a snapshot file current from a pool's events.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    own: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    file: SnapshotFile,
    dirty: bool,
}

impl Recorder {
    /// A recorder for member `own` (never listed: rejoining oneself is pointless),
    /// starting from `members` (the pool's current alive members, `(name, ip:port)`).
    /// Writes the file at once, which also clears a previous run's `left`: this run
    /// has not left.
    pub fn create(
        path: PathBuf,
        own: &str,
        members: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Recorder, GossipError> {
        let file = SnapshotFile {
            left: false,
            members: members.into_iter().filter(|(n, _)| n != own).collect(),
        };
        let rec = Recorder {
            inner: Arc::new(Inner {
                path,
                own: own.to_owned(),
                state: Mutex::new(State { file, dirty: true }),
            }),
        };
        rec.flush()?;
        Ok(rec)
    }

    /// Applies one pool event to the in-memory list (written by the next flush).
    pub fn observe(&self, event: &Event) {
        let Event::Member { kind, member } = event else {
            return;
        };
        if member.name == self.inner.own {
            return;
        }
        let mut st = self.inner.state.lock();
        let changed = match kind {
            MemberEventKind::Join | MemberEventKind::Update => {
                let addr = member_addr(member);
                st.file.members.insert(member.name.clone(), addr.clone()) != Some(addr)
            }
            MemberEventKind::Leave | MemberEventKind::Failed | MemberEventKind::Reap => {
                st.file.members.remove(&member.name).is_some()
            }
        };
        st.dirty |= changed;
    }

    /// Replaces the list with `members` (after events were missed).
    pub fn reset(&self, members: impl IntoIterator<Item = (String, String)>) {
        let own = &self.inner.own;
        let mut st = self.inner.state.lock();
        st.file.members = members.into_iter().filter(|(n, _)| n != own).collect();
        st.dirty = true;
    }

    /// Records a graceful leave and writes it out before returning, so that a restart
    /// right after it does not rejoin.
    pub fn mark_left(&self) -> Result<(), GossipError> {
        {
            let mut st = self.inner.state.lock();
            st.file.left = true;
            st.dirty = true;
        }
        self.flush()
    }

    /// Writes the file if anything changed since the last write.
    pub fn flush(&self) -> Result<(), GossipError> {
        let text = {
            let mut st = self.inner.state.lock();
            if !st.dirty {
                return Ok(());
            }
            st.dirty = false;
            serde_json::to_vec_pretty(&st.file).map_err(|e| file_error(&self.inner.path, e))?
        };
        crate::keyring::write_atomic(&self.inner.path, &text, false).map_err(|e| {
            // Try again on the next flush rather than lose the change.
            self.inner.state.lock().dirty = true;
            file_error(&self.inner.path, e)
        })
    }

    /// Follows `events` until the pool stops, flushing at most every
    /// [`FLUSH_INTERVAL`]. `current` gives the pool's alive members when events were
    /// missed (a lagging receiver).
    pub async fn run(
        self,
        mut events: Receiver<Event>,
        current: impl Fn() -> Vec<(String, String)>,
    ) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => self.observe(&ev),
                    Err(RecvError::Lagged(_)) => self.reset(current()),
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    if let Err(e) = self.flush() {
                        tracing::warn!(error = %e, "gossip snapshot not written");
                    }
                }
            }
        }
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "gossip snapshot not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, port: u16) -> Member {
        Member {
            name: name.into(),
            addr: "127.0.0.1".into(),
            port,
            tags: Default::default(),
            status: 1,
        }
    }

    fn ev(kind: MemberEventKind, name: &str, port: u16) -> Event {
        Event::Member {
            kind,
            member: member(name, port),
        }
    }

    #[test]
    fn a_first_start_has_no_previous_run() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join("local.snapshot")).unwrap(), None);
    }

    #[test]
    fn follows_joins_and_departures_and_leaves_itself_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serf/local.snapshot");
        let rec =
            Recorder::create(path.clone(), "me", [("me".into(), "127.0.0.1:1".into())]).unwrap();
        rec.observe(&ev(MemberEventKind::Join, "a", 2));
        rec.observe(&ev(MemberEventKind::Join, "b", 3));
        rec.observe(&ev(MemberEventKind::Join, "c", 4));
        rec.observe(&ev(MemberEventKind::Update, "a", 5));
        rec.observe(&ev(MemberEventKind::Failed, "b", 3));
        rec.observe(&ev(MemberEventKind::Leave, "c", 4));
        rec.observe(&ev(MemberEventKind::Join, "me", 9));
        rec.flush().unwrap();
        let prev = load(&path).unwrap().unwrap();
        assert_eq!(
            prev,
            Previous {
                left: false,
                addrs: vec!["127.0.0.1:5".into()],
            }
        );
        assert_eq!(prev.rejoin_addrs(false), ["127.0.0.1:5".to_string()]);
    }

    #[test]
    fn a_leave_is_remembered_and_only_rejoin_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.snapshot");
        let rec =
            Recorder::create(path.clone(), "me", [("a".into(), "127.0.0.1:2".into())]).unwrap();
        rec.mark_left().unwrap();
        let prev = load(&path).unwrap().unwrap();
        assert!(prev.left);
        assert!(prev.rejoin_addrs(false).is_empty());
        assert_eq!(prev.rejoin_addrs(true), ["127.0.0.1:2".to_string()]);
        // The next run starts over: it has not left.
        Recorder::create(path.clone(), "me", []).unwrap();
        assert!(!load(&path).unwrap().unwrap().left);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.snapshot");
        std::fs::write(&path, "{not json").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("local.snapshot"), "{err}");
    }
}
