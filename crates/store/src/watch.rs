//! Watch points for blocking queries.
//!
//! A reader subscribes to the [`Topic`]s it is about to read, then reads, then waits on
//! the [`WatchSet`]. Because subscription happens before the read, a write published in
//! between is never missed. A writer calls [`Watches::notify`] for every key it changed
//! after publishing the new state; that wakes subscribers of the exact key, of the
//! table, and of every prefix of the key.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

/// What a reader depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Any change in the table.
    Table(&'static str),
    /// A change of this exact key.
    Key(&'static str, String),
    /// A change of any key starting with this prefix.
    Prefix(&'static str, String),
}

#[derive(Default)]
struct Registry {
    points: HashMap<Topic, watch::Sender<u64>>,
    /// Size after the last sweep; the next sweep runs when the map has doubled.
    swept_len: usize,
}

/// The watch registry of a state store.
#[derive(Default)]
pub struct Watches {
    inner: Mutex<Registry>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches")
            .field("points", &self.inner.lock().points.len())
            .finish()
    }
}

/// The topics one read depends on; wait on it to block until any of them changes.
#[derive(Default)]
pub struct WatchSet {
    receivers: Vec<watch::Receiver<u64>>,
}

impl std::fmt::Debug for WatchSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchSet")
            .field("receivers", &self.receivers.len())
            .finish()
    }
}

impl Watches {
    /// Subscribes `set` to `topic`. Call before reading.
    pub fn subscribe(&self, set: &mut WatchSet, topic: Topic) {
        let mut reg = self.inner.lock();
        // Points for keys that are never written are only dropped by `notify`; sweep
        // the abandoned ones whenever the map doubles, so waiting on missing keys
        // cannot grow it without bound (amortised O(1) per subscribe).
        if reg.points.len() > 2 * reg.swept_len + 64 {
            reg.points.retain(|_, tx| tx.receiver_count() > 0);
            reg.swept_len = reg.points.len();
        }
        let sender = reg
            .points
            .entry(topic)
            .or_insert_with(|| watch::channel(0).0);
        set.receivers.push(sender.subscribe());
    }

    /// Wakes everything watching `table` or `key` in `table` (exactly or by prefix).
    pub fn notify(&self, table: &'static str, key: &str, index: u64) {
        let mut reg = self.inner.lock();
        if reg.points.is_empty() {
            return;
        }
        let mut fire = |topic: &Topic| {
            if let Some(tx) = reg.points.get(topic) {
                if tx.receiver_count() == 0 {
                    reg.points.remove(topic);
                } else {
                    tx.send_replace(index);
                }
            }
        };
        fire(&Topic::Table(table));
        fire(&Topic::Key(table, key.to_owned()));
        // Every prefix of the key, including the empty prefix (`?recurse` on the root).
        for (i, _) in key.char_indices().chain(std::iter::once((key.len(), ' '))) {
            fire(&Topic::Prefix(table, key[..i].to_owned()));
        }
    }

    /// Wakes everything subscribed to anything (snapshot restore replaces all state).
    pub fn notify_all(&self, index: u64) {
        let mut reg = self.inner.lock();
        reg.points.retain(|_, tx| {
            if tx.receiver_count() == 0 {
                false
            } else {
                tx.send_replace(index);
                true
            }
        });
    }

    /// Number of live watch points (for metrics and tests).
    pub fn len(&self) -> usize {
        self.inner.lock().points.len()
    }

    /// Whether no watch point exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl WatchSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing was subscribed: waiting on it could only time out.
    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }

    /// Waits until any subscribed topic changes or `timeout` passes.
    /// Returns `true` if woken by a change.
    pub async fn wait(self, timeout: Duration) -> bool {
        if self.receivers.is_empty() {
            tokio::time::sleep(timeout).await;
            return false;
        }
        // Each receiver's `changed()` future must live for the whole wait: dropping it
        // deregisters its waker, and a notification sent in between would be missed.
        let waits = self.receivers.into_iter().map(|mut rx| {
            Box::pin(async move {
                // An error means the watch point was dropped: treat it as a change so
                // the caller re-reads rather than sleeping out the timeout.
                let _ = rx.changed().await;
            })
        });
        let any = futures::future::select_all(waits);
        tokio::time::timeout(timeout, any).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn exact_prefix_and_table_topics_wake() {
        let w = Watches::default();
        for (topic, key, wakes) in [
            (Topic::Key("kv", "a/b".into()), "a/b", true),
            (Topic::Key("kv", "a/b".into()), "a/c", false),
            (Topic::Prefix("kv", "a/".into()), "a/c", true),
            (Topic::Prefix("kv", "".into()), "zzz", true),
            (Topic::Prefix("kv", "b/".into()), "a/c", false),
            (Topic::Table("kv"), "anything", true),
            (Topic::Table("nodes"), "anything", false),
        ] {
            let mut set = WatchSet::new();
            w.subscribe(&mut set, topic.clone());
            w.notify("kv", key, 1);
            assert_eq!(
                set.wait(Duration::from_secs(1)).await,
                wakes,
                "{topic:?} {key}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn change_between_subscribe_and_wait_is_not_lost() {
        let w = Watches::default();
        let mut set = WatchSet::new();
        w.subscribe(&mut set, Topic::Key("kv", "k".into()));
        w.notify("kv", "k", 3);
        assert!(set.wait(Duration::from_secs(60)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn change_after_waiting_started_wakes_the_waiter() {
        let w = std::sync::Arc::new(Watches::default());
        let mut set = WatchSet::new();
        w.subscribe(&mut set, Topic::Table("nodes"));
        w.subscribe(&mut set, Topic::Key("kv", "k".into()));
        let waiter = tokio::spawn(set.wait(Duration::from_secs(300)));
        // Let the waiter park before the write lands.
        tokio::task::yield_now().await;
        w.notify("kv", "k", 9);
        assert!(waiter.await.unwrap());
    }

    #[test]
    fn abandoned_points_for_unwritten_keys_are_swept() {
        let w = Watches::default();
        for i in 0..10_000 {
            let mut set = WatchSet::new();
            w.subscribe(&mut set, Topic::Key("kv", format!("missing/{i}")));
        }
        assert!(w.len() < 200, "{} watch points kept", w.len());
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_watchers_are_cleaned_up() {
        let w = Watches::default();
        let mut set = WatchSet::new();
        w.subscribe(&mut set, Topic::Key("kv", "k".into()));
        drop(set);
        w.notify("kv", "k", 1);
        assert!(w.is_empty());
    }
}
