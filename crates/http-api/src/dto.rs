//! Consul's JSON shapes.
//!
//! Output DTOs serialise in PascalCase exactly as Consul names its fields; they are built
//! from `tribune_types::model` records by hand (`From` impls), so the core types stay
//! free of wire concerns. Input DTOs are decoded through [`crate::json_in::decode`], so
//! their serde names are the canonical lower-case form.

pub mod input;
pub mod output;
pub mod query;

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Decodes a Go duration given as a string (`"10s"`) or as integer nanoseconds.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        N(u64),
        F(f64),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::S(s)) if s.is_empty() => Ok(None),
        Some(Raw::S(s)) => tribune_types::parse_go_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(Raw::N(n)) => Ok(Some(Duration::from_nanos(n))),
        Some(Raw::F(f)) if f >= 0.0 => Ok(Some(Duration::from_nanos(f as u64))),
        Some(Raw::F(_)) => Err(serde::de::Error::custom("negative duration")),
    }
}

/// Decodes `null` as the default value (Go decodes `null` into a zero value).
pub fn de_null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
