//! Vivaldi network coordinates, as Serf computes them: each direct probe's round
//! trip moves this member's coordinate toward a spot whose distance to the
//! responder's coordinate matches the measured time.
//!
//! Sans-io and deterministic: the caller passes measured round trips, and the only
//! randomness (a direction to push apart two coinciding coordinates) comes from a
//! caller-supplied RNG. The defaults are Serf's (`coordinate.DefaultConfig`), so the
//! numbers agents report look like Consul's.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::Rng;
use tribune_types::model::coordinate::{Coordinate, ERROR_MAX, HEIGHT_MIN};

/// Below this, a distance counts as zero.
const ZERO: f64 = 1.0e-6;
/// Serf's `VivaldiCE`: how fast the error estimate follows new samples.
const CE: f64 = 0.25;
/// Serf's `VivaldiCC`: how far one sample moves the coordinate.
const CC: f64 = 0.25;
/// Serf's `AdjustmentWindowSize`: samples behind the adjustment term.
const ADJUSTMENT_WINDOW: usize = 20;
/// Serf's `LatencyFilterSize`: recent samples per peer whose median is used.
const LATENCY_FILTER: usize = 3;
/// Serf's `GravityRho`: how strongly coordinates are pulled back to the origin,
/// so a whole cluster does not drift away over time.
const GRAVITY_RHO: f64 = 150.0;
/// Round trips longer than this are not believed.
const MAX_RTT: Duration = Duration::from_secs(10);

/// Why a sample was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleRejected {
    /// The peer's coordinate has another dimensionality or non-finite values.
    #[error("peer coordinate is invalid or incompatible")]
    BadCoordinate,
    /// The round trip is implausibly long.
    #[error("round trip {0:?} is out of range")]
    Rtt(Duration),
}

/// One member's Vivaldi state.
#[derive(Debug, Clone)]
pub struct Vivaldi {
    coord: Coordinate,
    origin: Coordinate,
    adjustment: [f64; ADJUSTMENT_WINDOW],
    adjustment_next: usize,
    /// Recent round trips per peer (seconds), oldest first.
    samples: BTreeMap<String, VecDeque<f64>>,
    resets: u64,
}

impl Default for Vivaldi {
    fn default() -> Self {
        Vivaldi {
            coord: Coordinate::origin(),
            origin: Coordinate::origin(),
            adjustment: [0.0; ADJUSTMENT_WINDOW],
            adjustment_next: 0,
            samples: BTreeMap::new(),
            resets: 0,
        }
    }
}

impl Vivaldi {
    /// This member's current coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coord
    }

    /// Times the coordinate went non-finite and was reset to the origin.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Drop the samples kept for a peer that is gone.
    pub fn forget(&mut self, peer: &str) {
        self.samples.remove(peer);
    }

    /// Use one measured round trip to `peer`, whose coordinate is `other`.
    pub fn observe(
        &mut self,
        peer: &str,
        other: &Coordinate,
        rtt: Duration,
        rng: &mut impl Rng,
    ) -> Result<&Coordinate, SampleRejected> {
        if !other.is_valid() || !other.is_compatible_with(&self.coord) {
            return Err(SampleRejected::BadCoordinate);
        }
        if rtt > MAX_RTT {
            return Err(SampleRejected::Rtt(rtt));
        }
        let rtt = self.filtered(peer, rtt.as_secs_f64());
        self.move_toward(other, rtt, rng);
        self.learn_adjustment(other, rtt);
        self.apply_gravity(rng);
        if !self.coord.is_valid() {
            self.resets += 1;
            self.coord = Coordinate::origin();
        }
        Ok(&self.coord)
    }

    /// The median of the peer's last few samples: one slow answer (a busy peer, a
    /// dropped packet retried) should not yank the coordinate.
    fn filtered(&mut self, peer: &str, rtt: f64) -> f64 {
        let window = self.samples.entry(peer.to_owned()).or_default();
        window.push_back(rtt);
        if window.len() > LATENCY_FILTER {
            window.pop_front();
        }
        let mut sorted: Vec<f64> = window.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// The Vivaldi step: a spring between the two coordinates whose rest length is
    /// the measured time, weighted by how confident each side is.
    fn move_toward(&mut self, other: &Coordinate, rtt: f64, rng: &mut impl Rng) {
        let rtt = rtt.max(ZERO);
        let dist = self.coord.distance_secs(other);
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (self.coord.error + other.error).max(ZERO);
        let weight = self.coord.error / total_error;
        self.coord.error =
            (CE * weight * wrongness + self.coord.error * (1.0 - CE * weight)).min(ERROR_MAX);
        let force = CC * weight * (rtt - dist);
        self.coord = apply_force(&self.coord, force, other, rng);
    }

    /// The adjustment term: half the mean of recent (measured − raw estimate)
    /// differences, which soaks up what a Euclidean space cannot express.
    fn learn_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        self.adjustment[self.adjustment_next] = rtt - self.coord.raw_distance_to(other);
        self.adjustment_next = (self.adjustment_next + 1) % ADJUSTMENT_WINDOW;
        let sum: f64 = self.adjustment.iter().sum();
        self.coord.adjustment = sum / (2.0 * ADJUSTMENT_WINDOW as f64);
    }

    fn apply_gravity(&mut self, rng: &mut impl Rng) {
        let dist = self.origin.distance_secs(&self.coord);
        let force = -(dist / GRAVITY_RHO).powi(2);
        self.coord = apply_force(&self.coord, force, &self.origin, rng);
    }
}

/// `c` pushed by `force` seconds along the line from `other` to it (pulled toward
/// `other` when negative); the height moves in proportion.
fn apply_force(c: &Coordinate, force: f64, other: &Coordinate, rng: &mut impl Rng) -> Coordinate {
    let (unit, mag) = unit_vector(&c.vec, &other.vec, rng);
    let mut out = c.clone();
    for (v, u) in out.vec.iter_mut().zip(&unit) {
        *v += u * force;
    }
    if mag > ZERO {
        out.height = ((out.height + other.height) * force / mag + out.height).max(HEIGHT_MIN);
    }
    out
}

/// The unit vector from `b` to `a` and the distance between them. Two coinciding
/// points get a random direction (a fixed one would line every fresh member up).
fn unit_vector(a: &[f64], b: &[f64], rng: &mut impl Rng) -> (Vec<f64>, f64) {
    let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mag = norm(&diff);
    if mag > ZERO {
        return (diff.iter().map(|d| d / mag).collect(), mag);
    }
    let random: Vec<f64> = diff.iter().map(|_| rng.gen::<f64>() - 0.5).collect();
    let rmag = norm(&random);
    if rmag > ZERO {
        return (random.iter().map(|d| d / rmag).collect(), 0.0);
    }
    let mut axis = vec![0.0; diff.len()];
    if let Some(first) = axis.first_mut() {
        *first = 1.0;
    }
    (axis, 0.0)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Members at fixed spots on a line, with the true RTT their distance plus a
    /// 1 ms access link each, probing each other round-robin: their estimates
    /// converge to within a few percent.
    #[test]
    fn coordinates_converge_to_the_true_round_trips() {
        let spots: [f64; 4] = [0.0, 0.010, 0.025, 0.050];
        let truth = |a: usize, b: usize| (spots[a] - spots[b]).abs() + 0.002;
        let mut rng = StdRng::seed_from_u64(7);
        let mut nodes: Vec<Vivaldi> = spots.iter().map(|_| Vivaldi::default()).collect();
        for round in 0..2000 {
            let a = round % spots.len();
            let b = (a + 1 + round / spots.len() % (spots.len() - 1)) % spots.len();
            let other = nodes[b].coordinate().clone();
            let rtt = Duration::from_secs_f64(truth(a, b));
            nodes[a]
                .observe(&format!("n{b}"), &other, rtt, &mut rng)
                .unwrap();
        }
        for a in 0..spots.len() {
            for b in 0..spots.len() {
                if a == b {
                    continue;
                }
                let est = nodes[a].coordinate().distance_secs(nodes[b].coordinate());
                let err = (est - truth(a, b)).abs() / truth(a, b);
                assert!(err < 0.15, "{a}→{b}: estimated {est}, true {}", truth(a, b));
            }
            assert!(nodes[a].coordinate().error < 0.5, "confidence grew");
        }
    }

    #[test]
    fn the_median_of_recent_samples_is_used() {
        let mut v = Vivaldi::default();
        assert_eq!(v.filtered("p", 0.010), 0.010);
        assert_eq!(v.filtered("p", 0.500), 0.500);
        assert_eq!(v.filtered("p", 0.012), 0.012, "median of 10, 500, 12 ms");
        assert_eq!(v.filtered("p", 0.011), 0.012, "the oldest (10 ms) dropped");
        v.forget("p");
        assert_eq!(v.filtered("p", 0.020), 0.020);
    }

    #[test]
    fn bad_samples_change_nothing() {
        let mut v = Vivaldi::default();
        let mut rng = StdRng::seed_from_u64(1);
        let mut nan = Coordinate::origin();
        nan.vec[0] = f64::NAN;
        let short = Coordinate {
            vec: vec![0.0; 2],
            ..Coordinate::origin()
        };
        let ms = Duration::from_millis(1);
        assert_eq!(
            v.observe("p", &nan, ms, &mut rng).unwrap_err(),
            SampleRejected::BadCoordinate
        );
        assert_eq!(
            v.observe("p", &short, ms, &mut rng).unwrap_err(),
            SampleRejected::BadCoordinate
        );
        assert!(v
            .observe("p", &Coordinate::origin(), MAX_RTT * 2, &mut rng)
            .is_err());
        assert_eq!(v.coordinate(), &Coordinate::origin());
        assert!(v.samples.is_empty());
    }

    #[test]
    fn coinciding_fresh_members_are_pushed_apart() {
        let mut v = Vivaldi::default();
        let mut rng = StdRng::seed_from_u64(3);
        let c = v
            .observe(
                "p",
                &Coordinate::origin(),
                Duration::from_millis(5),
                &mut rng,
            )
            .unwrap()
            .clone();
        assert!(norm(&c.vec) > 0.0, "moved off the origin: {c:?}");
        assert!(c.is_valid());
    }
}
