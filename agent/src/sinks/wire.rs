//! What goes on the wire for each kind of collector: RFC 5424 syslog messages (with RFC 6587 octet-counting
//! framing over streams) and the journal's native datagram format. Pure functions: bytes out, no I/O.

use super::queue::Item;

/// Syslog facility `daemon` (3), the one system services use.
pub const DEFAULT_FACILITY: u8 = 3;

/// One RFC 5424 message with the event's JSON as MSG:
/// `<PRI>1 TIMESTAMP HOSTNAME ovlaudit PROCID MSGID - JSON`. MSGID is the event's dataset.
pub fn syslog_5424(item: &Item, facility: u8, timestamp: &str, hostname: &str, pid: u32) -> Vec<u8> {
    let pri = u16::from(facility) * 8 + u16::from(item.severity.min(7));
    let host = header_field(hostname, 255);
    let msgid = header_field(&item.dataset, 32);
    format!("<{pri}>1 {timestamp} {host} ovlaudit {pid} {msgid} - {}", item.json).into_bytes()
}

/// RFC 6587 octet counting: `LEN SP MSG`, so a message may hold any byte, newlines included.
pub fn octet_counted(msg: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg);
    out
}

/// RFC 5424 header fields are printable US-ASCII without spaces; anything else becomes `_`, empty is `-`.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s.chars().take(max).map(|c| if c.is_ascii_graphic() { c } else { '_' }).collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v
    }
}

/// One datagram of the journal's native protocol (systemd's `sd_journal_send` wire format): the JSON in
/// `MESSAGE=`, plus flat fields a journal reader can match on (`OVLAUDIT_CONTAINER_ID=` …).
pub fn journald_datagram(item: &Item) -> Vec<u8> {
    let mut out = Vec::with_capacity(item.json.len() + 256);
    field(&mut out, "MESSAGE", item.json.as_bytes());
    field(&mut out, "PRIORITY", item.severity.min(7).to_string().as_bytes());
    field(&mut out, "SYSLOG_IDENTIFIER", b"ovlaudit");
    field(&mut out, "OVLAUDIT_DATASET", item.dataset.as_bytes());
    field(&mut out, "OVLAUDIT_EVENT_ID", item.event_id.as_bytes());
    field(&mut out, "OVLAUDIT_SEQUENCE", item.sequence.to_string().as_bytes());
    if let Some(id) = &item.container_id {
        field(&mut out, "OVLAUDIT_CONTAINER_ID", id.as_bytes());
    }
    if let Some(name) = &item.container_name {
        field(&mut out, "OVLAUDIT_CONTAINER_NAME", name.as_bytes());
    }
    out
}

/// `KEY=value\n`, or for a value holding a newline `KEY\n<u64 little-endian length><value>\n`.
fn field(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    if value.contains(&b'\n') {
        out.extend_from_slice(key.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
    } else {
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn item(json: &str, severity: u8) -> Item {
        Item {
            json: Arc::from(json),
            dataset: Arc::from("ovlaudit.container"),
            container_id: Some(Arc::from("abc")),
            container_name: Some(Arc::from("web")),
            severity,
            event_id: Arc::from("e-1"),
            sequence: 7,
        }
    }

    #[test]
    fn rfc5424_header_and_priority() {
        // daemon (3) * 8 + info (6) = 30; hand-computed from RFC 5424 section 6.2.1.
        let m = syslog_5424(&item("{\"a\":1}", 6), DEFAULT_FACILITY, "2026-11-28T16:33:02Z", "vm 1", 42);
        assert_eq!(m, b"<30>1 2026-11-28T16:33:02Z vm_1 ovlaudit 42 ovlaudit.container - {\"a\":1}");
        let m = syslog_5424(&item("{}", 3), 16, "2026-11-28T16:33:02Z", "", 1);
        assert!(m.starts_with(b"<131>1 2026-11-28T16:33:02Z - ovlaudit"), "local0 error, empty host is '-'");
    }

    #[test]
    fn octet_counting_counts_bytes_not_chars() {
        assert_eq!(octet_counted("é\n".as_bytes()), b"3 \xc3\xa9\n");
    }

    #[test]
    fn journald_fields_plain_and_binary_safe() {
        let d = journald_datagram(&item("{\"a\":\"x\"}", 6));
        let text = String::from_utf8(d).expect("utf-8 here");
        assert!(text.starts_with("MESSAGE={\"a\":\"x\"}\nPRIORITY=6\nSYSLOG_IDENTIFIER=ovlaudit\n"), "{text}");
        assert!(text.contains("OVLAUDIT_CONTAINER_ID=abc\n"));
        assert!(text.contains("OVLAUDIT_SEQUENCE=7\n"));
        let d = journald_datagram(&item("a\nb", 6));
        let mut expected = b"MESSAGE\n".to_vec();
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(b"a\nb\n");
        assert!(d.starts_with(&expected));
    }
}
