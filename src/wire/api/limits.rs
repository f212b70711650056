//! Resource limits of a session's container: what an image grants by
//! default and at most (YAML), what a run asks for and what it got (API).

use serde::Deserialize;
use std::time::Duration;

use crate::wire::duration::{de_duration, de_opt_duration};
use crate::wire::whole::{de_opt_whole, MAX_SAFE};

/// Resource limits of a session's container.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Memory limit in bytes (no swap beyond it).
    pub memory: u64,
    /// CPUs, fractional (`0.5` is half a core).
    pub cpus: f64,
    /// Maximum number of processes and threads.
    pub pids: i64,
    /// Wall-clock timeout in seconds; 0 means none.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_secs")]
    #[schemars(with = "u64")]
    pub timeout: Duration,
    /// Idle timeout in seconds: the session ends after this long with no
    /// client attached and no output (docs/leases.md); 0 means none.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_secs")]
    #[schemars(with = "u64")]
    pub idle_timeout: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(ceil_secs(d))
}

/// Limits a run asks for (`bento run --memory …`); unset ones take the
/// image's defaults.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsRequest {
    /// Bytes; at least 8 MiB, at most the image's maximum (`GET /v1/images`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_memory"
    )]
    #[schemars(range(min = 8388608, max = 9007199254740991u64))]
    pub memory: Option<u64>,
    /// CPU cores; at least 0.01, at most the image's maximum.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01))]
    pub cpus: Option<f64>,
    /// Processes and threads; at least 1, at most the image's maximum.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de_pids")]
    #[schemars(range(min = 1, max = 4194304))]
    pub pids: Option<i64>,
    /// Seconds, or a string such as `"30s"`.
    #[serde(
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_secs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "timeout_schema")]
    pub timeout: Option<Duration>,
    /// Seconds, or a string such as `"5m"`: end the session after this long
    /// with no client attached and no output; 0 for none, if the image
    /// allows.
    #[serde(
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_secs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "timeout_schema")]
    pub idle_timeout: Option<Duration>,
}

/// What a timeout may be written as: whole seconds, a number with a unit
/// (`crate::wire::duration::parse_duration`), or null for the image's.
fn timeout_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Seconds, or a string such as `\"30s\"`; at most the image's maximum.",
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 9007199254740991u64},
            {"type": "string", "pattern": r"^\s*[0-9]{1,12}\s*(ms|s|m|h|d)?\s*$"},
            {"type": "null"}
        ]
    })
}

fn de_memory<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_opt_whole(d, MAX_SAFE)
}

/// Linux's own ceiling on process ids: no pids limit above it means more.
const MAX_PIDS: u64 = 4_194_304;

fn de_pids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    // Bounded by MAX_PIDS, so the conversion cannot fail.
    Ok(de_opt_whole(d, MAX_PIDS)?.and_then(|p| i64::try_from(p).ok()))
}

/// Whole seconds, rounded up: a timeout of 500ms must not become 0 (none).
pub(crate) fn ceil_secs(d: &Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(ceil_secs(d)),
        None => s.serialize_none(),
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 256 << 20,
            cpus: 1.0,
            pids: 128,
            timeout: Duration::from_secs(3600),
            idle_timeout: Duration::ZERO,
        }
    }
}
