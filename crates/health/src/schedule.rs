//! When each check runs: a sans-io scheduler driven by the caller's clock.
//!
//! Every method takes `now` as a value, so tests step time by hand and the async
//! shell ([`crate::runner`]) passes `tokio::time::Instant::now()`. The rules:
//!
//! - a new check's first run is staggered by an offset the caller draws at random in
//!   `[0, interval)` ([`stagger`]), as Consul's `lib.RandomStagger` does, so a
//!   hundred checks registered together do not all fire on the same tick;
//! - [`Scheduler::due`] hands out checks whose time has come and marks them running;
//!   a running check is never handed out again until [`Scheduler::finished`], so a
//!   slow probe never overlaps itself;
//! - the next run is due at `previous start + interval`, or at once if the run took
//!   longer than that. (Consul waits a full interval *after* each run ends; starting
//!   from the previous start keeps the rate at one run per interval.)

use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The shortest interval the scheduler accepts; shorter ones are raised to it so a
/// zero interval cannot make [`Scheduler::due`] spin.
pub const MIN_SCHEDULER_INTERVAL: Duration = Duration::from_millis(1);

/// A random first-run offset in `[0, interval)`, Consul's `lib.RandomStagger`.
pub fn stagger<R: Rng + ?Sized>(interval: Duration, rng: &mut R) -> Duration {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.gen_range(0..nanos))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for its next run at this instant (also its key in the queue).
    Waiting(Instant),
    /// Handed out by `due` at this instant and not finished yet.
    Running(Instant),
}

#[derive(Debug, Clone)]
struct Entry {
    interval: Duration,
    state: State,
}

/// Run times of a set of checks keyed by `K` (the runner uses `CheckId`).
#[derive(Debug, Clone)]
pub struct Scheduler<K> {
    entries: BTreeMap<K, Entry>,
    /// Waiting entries ordered by due time; ties break on the key so `due` is
    /// deterministic.
    queue: BTreeSet<(Instant, K)>,
}

impl<K: Ord + Clone> Default for Scheduler<K> {
    fn default() -> Self {
        Scheduler {
            entries: BTreeMap::new(),
            queue: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> Scheduler<K> {
    /// An empty scheduler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check, or replaces one with the same key, first due at
    /// `now + min(stagger, interval)`.
    ///
    /// Replacing forgets the old entry entirely, including a run in flight: the
    /// caller cancels that run (its result belongs to the old definition), which is
    /// how an interval change or a re-registration takes effect at once. Returns
    /// whether an entry was replaced.
    pub fn add(&mut self, id: K, interval: Duration, now: Instant, stagger: Duration) -> bool {
        let replaced = self.remove(&id);
        let interval = interval.max(MIN_SCHEDULER_INTERVAL);
        let at = now + stagger.min(interval);
        self.queue.insert((at, id.clone()));
        self.entries.insert(
            id,
            Entry {
                interval,
                state: State::Waiting(at),
            },
        );
        replaced
    }

    /// Removes a check, waiting or running. Returns whether it was there; a later
    /// [`Scheduler::finished`] for it is ignored.
    pub fn remove(&mut self, id: &K) -> bool {
        match self.entries.remove(id) {
            Some(entry) => {
                if let State::Waiting(at) = entry.state {
                    self.queue.remove(&(at, id.clone()));
                }
                true
            }
            None => false,
        }
    }

    /// Checks due at `now`, in due-time order; each is marked running from `now`.
    pub fn due(&mut self, now: Instant) -> Vec<K> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            let Some((_, id)) = self.queue.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.state = State::Running(now);
            }
            out.push(id);
        }
        out
    }

    /// Records that the run of `id` handed out by [`Scheduler::due`] ended at `now`
    /// and schedules the next one at `start + interval` (or `now`, if later).
    /// Returns the next due time, or `None` if `id` is unknown or was not running
    /// (a stale completion after a remove or replace). A stale completion arriving
    /// after the *replacement* has itself started cannot be told apart by key alone,
    /// so the shell tags each run (the runner uses a generation number) and only
    /// reports completions of runs it still owns.
    pub fn finished(&mut self, id: &K, now: Instant) -> Option<Instant> {
        let entry = self.entries.get_mut(id)?;
        let State::Running(started) = entry.state else {
            return None;
        };
        let at = (started + entry.interval).max(now);
        entry.state = State::Waiting(at);
        self.queue.insert((at, id.clone()));
        Some(at)
    }

    /// The earliest time a waiting check is due, if any (running checks have none).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Whether `id` is scheduled (waiting or running).
    pub fn contains(&self, id: &K) -> bool {
        self.entries.contains_key(id)
    }

    /// Whether `id` has a run in flight.
    pub fn is_running(&self, id: &K) -> bool {
        matches!(
            self.entries.get(id).map(|e| e.state),
            Some(State::Running(_))
        )
    }

    /// The interval of `id`.
    pub fn interval(&self, id: &K) -> Option<Duration> {
        self.entries.get(id).map(|e| e.interval)
    }

    /// Number of scheduled checks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no check is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const SEC: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_run_is_staggered_and_then_periodic() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        s.add("a", 10 * SEC, t0, 3 * SEC);
        assert_eq!(s.next_deadline(), Some(t0 + 3 * SEC));
        assert!(s.due(t0 + ms(2999)).is_empty());
        assert_eq!(s.due(t0 + 3 * SEC), vec!["a"]);
        // The run takes 2 s; the next one is 10 s after the previous start.
        assert_eq!(s.finished(&"a", t0 + 5 * SEC), Some(t0 + 13 * SEC));
        assert_eq!(s.next_deadline(), Some(t0 + 13 * SEC));
        assert_eq!(s.due(t0 + 13 * SEC), vec!["a"]);
    }

    #[test]
    fn stagger_larger_than_the_interval_is_capped() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        s.add("a", SEC, t0, 5 * SEC);
        assert_eq!(s.next_deadline(), Some(t0 + SEC));
    }

    #[test]
    fn random_stagger_spreads_checks_over_the_interval() {
        let mut rng = StdRng::seed_from_u64(7);
        let interval = 10 * SEC;
        let offsets: Vec<Duration> = (0..200).map(|_| stagger(interval, &mut rng)).collect();
        assert!(offsets.iter().all(|o| *o < interval));
        // Every tenth of the interval gets some checks: they are spread, not bunched.
        for slice in 0..10u32 {
            let lo = interval * slice / 10;
            let hi = interval * (slice + 1) / 10;
            assert!(
                offsets.iter().any(|o| *o >= lo && *o < hi),
                "no check first due in [{lo:?}, {hi:?})"
            );
        }
        assert_eq!(stagger(Duration::ZERO, &mut rng), Duration::ZERO);
    }

    #[test]
    fn a_running_check_is_not_handed_out_again() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        s.add("slow", SEC, t0, Duration::ZERO);
        assert_eq!(s.due(t0), vec!["slow"]);
        assert!(s.is_running(&"slow"));
        assert_eq!(s.next_deadline(), None, "running checks have no deadline");
        // Several intervals pass while the probe hangs: nothing is due.
        assert!(s.due(t0 + 5 * SEC).is_empty());
        // It overran: the next run is due at once, exactly one of it.
        assert_eq!(s.finished(&"slow", t0 + ms(5500)), Some(t0 + ms(5500)));
        assert_eq!(s.due(t0 + ms(5500)), vec!["slow"]);
        assert!(s.due(t0 + 6 * SEC).is_empty());
    }

    #[test]
    fn due_is_ordered_by_time_then_key() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        s.add("c", SEC, t0, ms(10));
        s.add("b", SEC, t0, ms(20));
        s.add("a", SEC, t0, ms(20));
        s.add("d", SEC, t0, ms(500));
        assert_eq!(s.due(t0 + ms(100)), vec!["c", "a", "b"]);
        assert_eq!(s.next_deadline(), Some(t0 + ms(500)));
    }

    #[test]
    fn removal_while_running_ignores_the_late_completion() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        s.add("a", SEC, t0, Duration::ZERO);
        assert_eq!(s.due(t0), vec!["a"]);
        assert!(s.remove(&"a"));
        assert_eq!(s.finished(&"a", t0 + ms(10)), None);
        assert!(!s.contains(&"a"));
        assert_eq!(s.next_deadline(), None);
        assert!(s.due(t0 + 10 * SEC).is_empty());
        assert!(!s.remove(&"a"));
    }

    #[test]
    fn removal_while_waiting_clears_the_deadline() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        s.add("a", SEC, t0, ms(100));
        s.add("b", SEC, t0, ms(200));
        assert!(s.remove(&"a"));
        assert_eq!(s.next_deadline(), Some(t0 + ms(200)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_new_interval_applies_from_the_re_add() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        s.add("a", 10 * SEC, t0, Duration::ZERO);
        assert_eq!(s.due(t0), vec!["a"]);
        s.finished(&"a", t0 + ms(10));
        assert_eq!(s.next_deadline(), Some(t0 + 10 * SEC));

        // Re-registered with a 2 s interval at t0+1s: staggered within the new
        // interval, then every 2 s.
        assert!(s.add("a", 2 * SEC, t0 + SEC, ms(500)));
        assert_eq!(s.len(), 1);
        assert_eq!(s.interval(&"a"), Some(2 * SEC));
        assert_eq!(s.next_deadline(), Some(t0 + ms(1500)));
        assert_eq!(s.due(t0 + ms(1500)), vec!["a"]);
        assert_eq!(s.finished(&"a", t0 + ms(1600)), Some(t0 + ms(3500)));
    }

    #[test]
    fn re_adding_a_running_check_drops_its_run() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        s.add("a", SEC, t0, Duration::ZERO);
        assert_eq!(s.due(t0), vec!["a"]);
        assert!(s.add("a", SEC, t0 + ms(100), ms(50)));
        assert!(!s.is_running(&"a"));
        // The old run's completion is stale: ignored, the new schedule stands.
        assert_eq!(s.finished(&"a", t0 + ms(120)), None);
        assert_eq!(s.next_deadline(), Some(t0 + ms(150)));
    }

    #[test]
    fn zero_interval_is_raised() {
        let t0 = Instant::now();
        let mut s = Scheduler::new();
        s.add("a", Duration::ZERO, t0, Duration::ZERO);
        assert_eq!(s.due(t0), vec!["a"]);
        assert_eq!(s.finished(&"a", t0), Some(t0 + MIN_SCHEDULER_INTERVAL));
    }
}
