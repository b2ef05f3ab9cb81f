//! Network coordinates: Serf's Vivaldi coordinate as Consul stores and serves it
//! (`/v1/coordinate/*`, `?near=` sorting, `consul rtt`).
//!
//! Only the data and the distance estimate live here; how a coordinate moves with
//! each measured round trip is the gossip crate's business.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Dimensions of the Euclidean part, Serf's default: coordinates of other
/// dimensionality are rejected as incompatible.
pub const DIMENSIONS: usize = 8;
/// Serf's `HeightMin`: the smallest height a coordinate keeps.
pub const HEIGHT_MIN: f64 = 10.0e-6;
/// Serf's `VivaldiErrorMax`: the error a fresh coordinate starts with.
pub const ERROR_MAX: f64 = 1.5;

/// A point in Vivaldi space: a Euclidean vector plus a height (the access link's
/// latency) and an adjustment (a correction learnt from recent samples). All in
/// seconds. Consul's JSON field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coordinate {
    /// The Euclidean part.
    pub vec: Vec<f64>,
    /// Confidence in this coordinate (not used for distances).
    pub error: f64,
    /// Added to distances to this node when that keeps them positive.
    pub adjustment: f64,
    /// Distance from the Euclidean point to the network core.
    pub height: f64,
}

// Valid coordinates (the only kind stored, see `is_valid`) hold no NaN, so their
// equality is reflexive; write commands carrying them need `Eq`.
impl Eq for Coordinate {}

impl Default for Coordinate {
    fn default() -> Self {
        Coordinate::origin()
    }
}

impl Coordinate {
    /// A fresh coordinate: at the origin, with the largest error.
    pub fn origin() -> Coordinate {
        Coordinate {
            vec: vec![0.0; DIMENSIONS],
            error: ERROR_MAX,
            adjustment: 0.0,
            height: HEIGHT_MIN,
        }
    }

    /// Whether every component is a finite number.
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|v| v.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    /// Whether the two live in the same space (same dimensionality).
    pub fn is_compatible_with(&self, other: &Coordinate) -> bool {
        self.vec.len() == other.vec.len()
    }

    /// Distance without the adjustments: Euclidean distance plus both heights, in
    /// seconds.
    pub fn raw_distance_to(&self, other: &Coordinate) -> f64 {
        let sq: f64 = self
            .vec
            .iter()
            .zip(&other.vec)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        sq.sqrt() + self.height + other.height
    }

    /// Estimated round-trip time to `other`, in seconds: the raw distance plus
    /// both adjustments, unless that would make it non-positive.
    pub fn distance_secs(&self, other: &Coordinate) -> f64 {
        let raw = self.raw_distance_to(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        if adjusted > 0.0 {
            adjusted
        } else {
            raw
        }
    }

    /// [`Coordinate::distance_secs`] as a duration.
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        Duration::from_secs_f64(self.distance_secs(other).max(0.0))
    }
}

/// Estimated RTT between two optional coordinates, in seconds: infinite when
/// either is missing or they are not comparable, so such rows sort last
/// (Consul's `ComputeDistance`).
pub fn distance_or_inf(a: Option<&Coordinate>, b: Option<&Coordinate>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) if a.is_compatible_with(b) => a.distance_secs(b),
        _ => f64::INFINITY,
    }
}

/// A node's coordinate in one network segment, as stored in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinateEntry {
    /// Node name.
    pub node: String,
    /// Network segment ("" for the default one).
    #[serde(default)]
    pub segment: String,
    /// The coordinate.
    pub coord: Coordinate,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f64, height: f64, adjustment: f64) -> Coordinate {
        let mut c = Coordinate::origin();
        c.vec[0] = x;
        c.height = height;
        c.adjustment = adjustment;
        c
    }

    #[test]
    fn distance_is_euclidean_plus_heights_plus_adjustments() {
        let a = at(0.0, 0.001, 0.0);
        let b = at(0.010, 0.002, 0.0);
        assert!((a.distance_secs(&b) - 0.013).abs() < 1e-12);
        let a = at(0.0, 0.001, 0.002);
        assert!((a.distance_secs(&b) - 0.015).abs() < 1e-12);
        assert_eq!(a.distance_to(&b), Duration::from_secs_f64(0.015));
    }

    #[test]
    fn a_negative_adjusted_distance_falls_back_to_the_raw_one() {
        let a = at(0.0, 0.001, -0.5);
        let b = at(0.010, 0.002, 0.0);
        assert!((a.distance_secs(&b) - 0.013).abs() < 1e-12);
    }

    #[test]
    fn validity_and_compatibility() {
        let mut c = Coordinate::origin();
        assert!(c.is_valid());
        c.vec[3] = f64::NAN;
        assert!(!c.is_valid());
        let short = Coordinate {
            vec: vec![0.0; 3],
            ..Coordinate::origin()
        };
        assert!(!short.is_compatible_with(&Coordinate::origin()));
        assert_eq!(
            distance_or_inf(Some(&short), Some(&Coordinate::origin())),
            f64::INFINITY
        );
        assert_eq!(distance_or_inf(None, Some(&short)), f64::INFINITY);
    }

    #[test]
    fn json_uses_consuls_field_names() {
        let json = serde_json::to_value(Coordinate::origin()).unwrap();
        assert_eq!(json["Error"], 1.5);
        assert_eq!(json["Height"], 1.0e-5);
        assert_eq!(json["Adjustment"], 0.0);
        assert_eq!(json["Vec"].as_array().unwrap().len(), 8);
    }
}
