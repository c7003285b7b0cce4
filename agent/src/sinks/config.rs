//! A sink as the configuration file writes it: a URI alone (`sinks = ["tcp://…"]`, `--sink URI`) or a
//! `[[sink]]` table with delivery settings. Unknown keys and bad values are rejected by the file's parser
//! with the line they are on.

use super::transport::Fsync;
use super::uri::SinkKind;
use super::SinkConfig;
use crate::config::Count;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Parses `--sink URI` (and each string of `sinks = [...]`); bare `stdout` and `journald` are accepted.
pub fn parse_sink_uri(uri: &str) -> Result<SinkConfig, String> {
    let uri = match uri {
        "stdout" => "stdout:",
        "journald" => "journald:",
        u => u,
    };
    SinkKind::parse(uri).map(SinkConfig::new).map_err(|e| e.to_string())
}

/// A URI string in the file.
pub struct SinkUri(pub SinkConfig);

impl<'de> Deserialize<'de> for SinkUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_sink_uri(&s).map(SinkUri).map_err(de::Error::custom)
    }
}

/// A `[[sink]]` table, checked as it is read so that errors carry the table's line.
#[derive(Deserialize)]
#[serde(try_from = "SinkTable")]
pub struct SinkEntry(pub SinkConfig);

impl TryFrom<SinkTable> for SinkEntry {
    type Error = String;
    fn try_from(t: SinkTable) -> Result<Self, String> {
        t.into_config().map(SinkEntry)
    }
}

/// A `[[sink]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkTable {
    uri: SinkUri,
    queue_size: Option<Count>,
    batch_size: Option<Count>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    fsync: Option<Fsync>,
    facility: Option<Facility>,
    timeout: Option<Timeout>,
}

impl SinkTable {
    /// The sink it describes.
    fn into_config(self) -> Result<SinkConfig, String> {
        let mut c = self.uri.0;
        if let Some(Count(n)) = self.queue_size {
            c.queue_size = within("queue_size", n, 1, MAX_QUEUE_SIZE)?;
        }
        if let Some(Count(n)) = self.batch_size {
            c.batch_size = within("batch_size", n, 1, MAX_BATCH_SIZE)?;
        }
        if !self.headers.is_empty() && !matches!(c.kind, SinkKind::Http { .. }) {
            return Err(format!("headers apply to http:// sinks only, not {}", c.kind));
        }
        for (k, v) in &self.headers {
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(format!("header name {k:?} is not a token"));
            }
            if v.contains(['\r', '\n']) {
                return Err(format!("header {k} holds a line break"));
            }
        }
        c.headers = self.headers.into_iter().collect();
        if let Some(f) = self.fsync {
            c.fsync = f;
        }
        if let Some(Facility(f)) = self.facility {
            c.facility = f;
        }
        if let Some(Timeout(t)) = self.timeout {
            c.timeout = t;
        }
        Ok(c)
    }
}

/// The most events a sink holds while its collector is down (about 1 KB to 30 KiB each in memory).
pub const MAX_QUEUE_SIZE: u64 = 1_000_000;
/// The most events in one write or POST.
pub const MAX_BATCH_SIZE: u64 = 100_000;

fn within(key: &str, n: u64, min: u64, max: u64) -> Result<usize, String> {
    if n < min {
        Err(format!("{key} must be at least {min}"))
    } else if n > max {
        Err(format!("{key} = {n} is too many: at most {max}"))
    } else {
        Ok(n as usize)
    }
}

/// A syslog facility by name (`daemon`, `local0`…`local7`, `user`) or number (0–23).
struct Facility(u8);

const FACILITIES: [(&str, u8); 12] = [
    ("user", 1),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

impl<'de> Deserialize<'de> for Facility {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some((_, n)) = FACILITIES.iter().find(|(name, _)| *name == s) {
            return Ok(Facility(*n));
        }
        match s.parse::<u8>() {
            Ok(n) if n <= 23 => Ok(Facility(n)),
            _ => Err(de::Error::custom(format!(
                "facility {s:?}: use daemon, user, auth, syslog, local0 … local7, or a number from 0 to 23"
            ))),
        }
    }
}

/// A duration such as `10s` or `500ms`.
struct Timeout(Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match crate::config::parse_duration(&s) {
            Ok(t) if t < Duration::from_millis(10) => Err(de::Error::custom("timeout is too short: at least 10ms")),
            Ok(t) if t > Duration::from_secs(600) => Err(de::Error::custom("timeout is too long: at most 10m")),
            Ok(t) => Ok(Timeout(t)),
            Err(e) => Err(de::Error::custom(e)),
        }
    }
}

/// The syslog facility's name, for printing a configuration back.
pub fn facility_name(n: u8) -> String {
    FACILITIES.iter().find(|(_, v)| *v == n).map_or_else(|| n.to_string(), |(name, _)| (*name).to_owned())
}
