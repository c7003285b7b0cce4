//! A sink as the configuration file writes it: a URI alone (`sinks = ["tcp://…"]`, `--sink URI`) or a
//! `[[sink]]` table with delivery settings. Unknown keys and bad values are rejected by the file's parser
//! with the line they are on.

use super::transport::Fsync;
use super::uri::SinkKind;
use super::SinkConfig;
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
    queue_size: Option<usize>,
    batch_size: Option<usize>,
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
        if let Some(n) = self.queue_size {
            if n == 0 {
                return Err("queue_size must be at least 1".into());
            }
            c.queue_size = n;
        }
        if let Some(n) = self.batch_size {
            if n == 0 {
                return Err("batch_size must be at least 1".into());
            }
            c.batch_size = n;
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
            Ok(t) if !t.is_zero() => Ok(Timeout(t)),
            Ok(_) => Err(de::Error::custom("timeout must be longer than zero")),
            Err(e) => Err(de::Error::custom(e)),
        }
    }
}

/// The syslog facility's name, for printing a configuration back.
pub fn facility_name(n: u8) -> String {
    FACILITIES.iter().find(|(_, v)| *v == n).map_or_else(|| n.to_string(), |(name, _)| (*name).to_owned())
}
