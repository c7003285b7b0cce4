//! Sink addresses as operators write them: `stdout:`, `file:/path`, `tcp://host:port`, `unix:///path`,
//! `http://host:port/path`, `syslog+tcp://host:port`, `syslog+udp://host:port`, `syslog+unix:///dev/log`,
//! `journald:` (or `journald:/path/to/socket`).

use std::fmt;
use std::path::PathBuf;

/// Where a sink sends events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// NDJSON on standard output (journald picks it up under systemd).
    Stdout,
    /// NDJSON appended to a file.
    File(PathBuf),
    /// NDJSON over TCP.
    Tcp(String),
    /// NDJSON over a unix stream socket.
    Unix(PathBuf),
    /// NDJSON batches POSTed over HTTP/1.1.
    Http {
        /// `host:port`.
        authority: String,
        /// Request path, with any query.
        path: String,
    },
    /// RFC 5424 over TCP, octet-counting framing.
    SyslogTcp(String),
    /// RFC 5424 over UDP, one message per datagram.
    SyslogUdp(String),
    /// RFC 5424 datagrams to a unix socket such as `/dev/log`.
    SyslogUnix(PathBuf),
    /// The journal's native protocol.
    Journald(PathBuf),
}

/// The journal's native socket.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// A sink address that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink {uri:?}: {reason}")]
pub struct SinkUriError {
    /// What was given.
    pub uri: String,
    /// Why it cannot be used.
    pub reason: String,
}

impl SinkKind {
    /// Parses a sink address.
    pub fn parse(uri: &str) -> Result<SinkKind, SinkUriError> {
        let err = |reason: &str| SinkUriError { uri: uri.to_owned(), reason: reason.to_owned() };
        let (scheme, rest) = uri.split_once(':').ok_or_else(|| {
            err("expected SCHEME:…, one of stdout:, file:, tcp://, unix://, http://, syslog+tcp://, syslog+udp://, syslog+unix://, journald:")
        })?;
        let path_of = |rest: &str| -> Result<PathBuf, SinkUriError> {
            let p = rest.strip_prefix("//").unwrap_or(rest);
            if p.starts_with('/') {
                Ok(PathBuf::from(p))
            } else {
                Err(err("needs an absolute path, e.g. file:/var/log/ovlaudit.ndjson or unix:///run/collector.sock"))
            }
        };
        let host_port = |rest: &str| -> Result<String, SinkUriError> {
            let hp = rest.strip_prefix("//").ok_or_else(|| err("expected //host:port"))?.trim_end_matches('/');
            match hp.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => Ok(hp.to_owned()),
                _ => Err(err("expected //host:port with a port from 1 to 65535 (IPv6 as [::1]:port)")),
            }
        };
        match scheme {
            "stdout" if rest.is_empty() => Ok(SinkKind::Stdout),
            "file" => Ok(SinkKind::File(path_of(rest)?)),
            "tcp" => Ok(SinkKind::Tcp(host_port(rest)?)),
            "unix" => Ok(SinkKind::Unix(path_of(rest)?)),
            "http" => {
                let r = rest.strip_prefix("//").ok_or_else(|| err("expected http://host:port/path"))?;
                let (authority, path) = match r.find('/') {
                    Some(i) => (&r[..i], &r[i..]),
                    None => (r, "/"),
                };
                let authority = host_port(&format!("//{authority}"))?;
                Ok(SinkKind::Http { authority, path: path.to_owned() })
            }
            "https" => Err(err("https is not supported; send to a local collector over http or tcp")),
            "syslog+tcp" => Ok(SinkKind::SyslogTcp(host_port(rest)?)),
            "syslog+udp" => Ok(SinkKind::SyslogUdp(host_port(rest)?)),
            "syslog+unix" => Ok(SinkKind::SyslogUnix(path_of(rest)?)),
            "journald" if rest.is_empty() => Ok(SinkKind::Journald(PathBuf::from(JOURNALD_SOCKET))),
            "journald" => Ok(SinkKind::Journald(path_of(rest)?)),
            _ => Err(err("unknown scheme; use stdout:, file:, tcp://, unix://, http://, syslog+tcp://, syslog+udp://, syslog+unix://, journald:")),
        }
    }

    /// Whether the sink is a byte stream whose unread data dies with the peer (so recently written
    /// events are sent again after a reconnect).
    pub fn is_stream(&self) -> bool {
        matches!(self, SinkKind::Tcp(_) | SinkKind::Unix(_) | SinkKind::SyslogTcp(_))
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkKind::Stdout => write!(f, "stdout:"),
            SinkKind::File(p) => write!(f, "file:{}", p.display()),
            SinkKind::Tcp(a) => write!(f, "tcp://{a}"),
            SinkKind::Unix(p) => write!(f, "unix://{}", p.display()),
            SinkKind::Http { authority, path } => write!(f, "http://{authority}{path}"),
            SinkKind::SyslogTcp(a) => write!(f, "syslog+tcp://{a}"),
            SinkKind::SyslogUdp(a) => write!(f, "syslog+udp://{a}"),
            SinkKind::SyslogUnix(p) => write!(f, "syslog+unix://{}", p.display()),
            SinkKind::Journald(p) => write!(f, "journald:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses() {
        assert_eq!(SinkKind::parse("stdout:"), Ok(SinkKind::Stdout));
        assert_eq!(SinkKind::parse("file:/var/log/o.ndjson"), Ok(SinkKind::File("/var/log/o.ndjson".into())));
        assert_eq!(SinkKind::parse("file:///var/log/o.ndjson"), Ok(SinkKind::File("/var/log/o.ndjson".into())));
        assert_eq!(SinkKind::parse("tcp://127.0.0.1:5170"), Ok(SinkKind::Tcp("127.0.0.1:5170".into())));
        assert_eq!(SinkKind::parse("tcp://[::1]:5170"), Ok(SinkKind::Tcp("[::1]:5170".into())));
        assert_eq!(SinkKind::parse("unix:///run/c.sock"), Ok(SinkKind::Unix("/run/c.sock".into())));
        assert_eq!(
            SinkKind::parse("http://localhost:8080/ingest?x=1"),
            Ok(SinkKind::Http { authority: "localhost:8080".into(), path: "/ingest?x=1".into() })
        );
        assert_eq!(
            SinkKind::parse("http://localhost:8080"),
            Ok(SinkKind::Http { authority: "localhost:8080".into(), path: "/".into() })
        );
        assert_eq!(SinkKind::parse("syslog+tcp://127.0.0.1:514"), Ok(SinkKind::SyslogTcp("127.0.0.1:514".into())));
        assert_eq!(SinkKind::parse("syslog+udp://127.0.0.1:514"), Ok(SinkKind::SyslogUdp("127.0.0.1:514".into())));
        assert_eq!(SinkKind::parse("syslog+unix:///dev/log"), Ok(SinkKind::SyslogUnix("/dev/log".into())));
        assert_eq!(SinkKind::parse("journald:"), Ok(SinkKind::Journald(JOURNALD_SOCKET.into())));
        assert_eq!(SinkKind::parse("journald:/tmp/j.sock"), Ok(SinkKind::Journald("/tmp/j.sock".into())));
    }

    #[test]
    fn bad_addresses_say_why() {
        for (uri, why) in [
            ("tcp://localhost", "port"),
            ("tcp://:514", "port"),
            ("tcp://host:99999", "port"),
            ("file:relative.log", "absolute path"),
            ("https://x:443/", "not supported"),
            ("kafka://x:1", "unknown scheme"),
            ("stdout", "expected SCHEME"),
        ] {
            let e = SinkKind::parse(uri).expect_err(uri);
            assert!(e.to_string().contains(why), "{uri}: {e}");
        }
    }

    #[test]
    fn display_round_trips() {
        for uri in ["stdout:", "tcp://127.0.0.1:1", "http://h:1/p", "syslog+unix:///dev/log", "journald:/x"] {
            assert_eq!(SinkKind::parse(uri).expect(uri).to_string(), uri);
        }
    }
}
