//! Shipping to real collectors over loopback: rsyslog and syslog-ng (RFC 5424, octet counting), a TCP
//! collector killed for 10 s mid-stream, an HTTP collector that fails and stalls, a file renamed under the
//! agent, and the journal's native protocol. In every test a `file:` sink on the same agent is the
//! reference for what was emitted: events carry `event.sequence`, so what is missing is exactly countable.

use crate::collectors::{wait_until, Daemon, HttpReceiver, Rsyslog, SyslogNg, TcpReceiver};
use crate::common::OVLAUDIT;
use crate::events::{assert_events_valid, event_validator};
use crate::harness::Engine;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn engine_with_containers() -> Option<Engine> {
    let engine = Engine::start().unwrap_or_else(|e| panic!("cannot start a private dockerd: {e}"))?;
    engine.import_busybox("bb:1");
    engine.docker(&["run", "--name", "one", "bb:1", "sh", "-c", "echo 1 > /one"]);
    engine.docker(&["create", "--name", "two", "--label", "team=storage", "bb:1", "true"]);
    Some(engine)
}

/// `ovlaudit run` with a config file holding `sinks_toml`, plus a reference `file:` sink.
fn start_agent(dir: &Path, engine: &Engine, interval: &str, sinks_toml: &str) -> (Daemon, PathBuf) {
    let reference = dir.join("reference.ndjson");
    let config = dir.join("ovlaudit.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"{interval}\"\ndocker_root = \"{}\"\n\n[[sink]]\nuri = \"file:{}\"\n\n{sinks_toml}",
            engine.data_root().display(),
            reference.display()
        ),
    )
    .expect("write config");
    let mut cmd = crate::common::hermetic_ovlaudit();
    cmd.args(["run", "--config"]).arg(&config).env("RUST_LOG", "info");
    (Daemon::spawn(cmd, "ovlaudit run", &dir.join("agent.log")), reference)
}

fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn count_scans(path: &Path) -> usize {
    read_events(path).iter().filter(|e| e["event"]["dataset"] == "ovlaudit.scan").count()
}

fn by_sequence(events: &[Value]) -> BTreeMap<u64, &Value> {
    events.iter().filter_map(|e| Some((e["event"]["sequence"].as_u64()?, e))).collect()
}

/// Stops the agent with SIGTERM; it must exit 0 within 5 s (sinks flushed).
fn stop(mut agent: Daemon) {
    agent.signal(libc::SIGTERM);
    let st =
        agent.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| panic!("agent did not stop: {}", agent.output()));
    assert!(st.success(), "agent exit status {st}: {}", agent.output());
}

#[test]
fn rsyslog_and_syslog_ng_receive_every_event_as_json() {
    let Some(engine) = engine_with_containers() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(rsyslog) = Rsyslog::start(dir.path()) else { return };
    let Some(syslog_ng) = SyslogNg::start(dir.path()) else { return };
    let sinks = format!(
        "[[sink]]\nuri = \"syslog+tcp://127.0.0.1:{}\"\n\n[[sink]]\nuri = \"syslog+tcp://127.0.0.1:{}\"\n",
        rsyslog.port, syslog_ng.port
    );
    let (agent, reference) = start_agent(dir.path(), &engine, "1h", &sinks);
    assert!(wait_until(Duration::from_secs(20), || count_scans(&reference) >= 1), "no scan: {}", agent.output());
    let sent = read_events(&reference);
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
    assert!(
        wait_until(Duration::from_secs(20), || lines(&rsyslog.out) >= sent.len()
            && lines(&syslog_ng.out) >= sent.len()),
        "collectors got {} and {} of {} events",
        lines(&rsyslog.out),
        lines(&syslog_ng.out),
        sent.len()
    );
    stop(agent);
    let validator = event_validator();

    let via_rsyslog = read_events(&rsyslog.out);
    assert_events_valid(&validator, &via_rsyslog);
    assert!(
        !rsyslog.failed.exists(),
        "rsyslog failed to parse: {}",
        std::fs::read_to_string(&rsyslog.failed).unwrap_or_default()
    );
    let ids = |evs: &[Value]| -> BTreeSet<String> {
        evs.iter().filter_map(|e| e["event"]["id"].as_str().map(str::to_owned)).collect()
    };
    assert_eq!(ids(&via_rsyslog), ids(&sent), "rsyslog got exactly the emitted events");
    assert_eq!(via_rsyslog, sent, "and each one unchanged");

    let mut via_syslog_ng = Vec::new();
    for line in std::fs::read_to_string(&syslog_ng.out).expect("syslog-ng output").lines() {
        let (parsed_id, json) = line.split_once(' ').expect("`<id> <message>`");
        let ev: Value = serde_json::from_str(json).expect("the message is the JSON event");
        assert_eq!(ev["event"]["id"], parsed_id, "syslog-ng's json-parser read event.id");
        via_syslog_ng.push(ev);
    }
    assert_events_valid(&validator, &via_syslog_ng);
    assert_eq!(via_syslog_ng, sent, "syslog-ng got exactly the emitted events");
}

#[test]
fn tcp_collector_down_for_ten_seconds_loses_only_what_was_dropped() {
    let Some(engine) = engine_with_containers() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rx = TcpReceiver::start();
    // A small queue, so the outage overflows it and the drop count is exercised: a quiet host ships one
    // summary a scan, ten in the outage.
    let sinks = format!("[[sink]]\nuri = \"tcp://127.0.0.1:{}\"\nqueue_size = 5\n", rx.port());
    let (agent, reference) = start_agent(dir.path(), &engine, "1s", &sinks);
    assert!(wait_until(Duration::from_secs(20), || count_scans(&reference) >= 3), "{}", agent.output());
    rx.kill();
    std::thread::sleep(Duration::from_secs(10));
    rx.restart();
    let restarted_at = read_events(&reference).len() as u64;
    // A scan summary carries the sink's counters as they stood just before that scan's events were queued,
    // so its `dropped` covers every event before it only if queueing its own events dropped nothing: the
    // sink was connected and had room for them. Back-off after ten seconds of failures may hold the next
    // attempt for up to half a minute, so wait for such a summary to arrive.
    let settled = |rx: &TcpReceiver| -> Option<(u64, Value)> {
        let events = read_events(&reference);
        let sent = by_sequence(&events);
        rx.lines().iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).rev().find_map(|e| {
            let seq = e["event"]["sequence"].as_u64()?;
            if e["event"]["dataset"] != "ovlaudit.scan" || seq <= restarted_at {
                return None;
            }
            let tcp = e["ovlaudit"]["scan"]["sinks"]
                .as_array()?
                .iter()
                .find(|s| s["sink"].as_str().is_some_and(|u| u.starts_with("tcp://")))?
                .clone();
            let previous_scan = sent.range(..seq).rev().find(|(_, e)| e["event"]["dataset"] == "ovlaudit.scan")?.0;
            let this_scan_events = seq - previous_scan;
            let room = tcp["connected"] == true && tcp["queue_depth"].as_u64()? + this_scan_events <= 5;
            room.then_some((seq, tcp))
        })
    };
    assert!(wait_until(Duration::from_secs(90), || settled(&rx).is_some()), "{}", agent.output());
    let (last_seq, tcp) = settled(&rx).expect("settled");
    stop(agent);

    let sent = read_events(&reference);
    let sent_by_seq = by_sequence(&sent);
    let received: Vec<Value> = rx.lines().iter().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let mut got: BTreeMap<u64, &Value> = BTreeMap::new();
    for ev in &received {
        let seq = ev["event"]["sequence"].as_u64().expect("sequence");
        if let Some(prev) = got.insert(seq, ev) {
            assert_eq!(prev["event"]["id"], ev["event"]["id"], "a duplicate has the same event.id");
        }
        assert_eq!(Some(&ev), sent_by_seq.get(&seq), "received events are the emitted ones");
    }
    let missing: Vec<u64> = sent_by_seq.keys().filter(|s| **s < last_seq && !got.contains_key(s)).copied().collect();
    let dropped = tcp["dropped"].as_u64().expect("dropped");
    assert!(dropped > 0, "a 10 s outage at one scan a second overflows a queue of 5");
    assert!(tcp["retried"].as_u64() > Some(0), "the batch in flight was sent again: {tcp}");
    assert_eq!(missing.len() as u64, dropped, "what is missing is exactly what the drop counter says: {missing:?}");
}

#[test]
fn http_collector_failing_and_stalling_gets_every_event_without_slowing_scans() {
    let Some(engine) = engine_with_containers() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // Every third request fails with 500; the fifth stalls for 30 s before answering.
    let rx = HttpReceiver::start(Arc::new(|n| match n {
        4 => (200, Duration::from_secs(30)),
        n if n % 3 == 2 => (500, Duration::ZERO),
        _ => (200, Duration::ZERO),
    }));
    let sinks = format!("[[sink]]\nuri = \"http://127.0.0.1:{}/ingest\"\n", rx.port());
    let (agent, reference) = start_agent(dir.path(), &engine, "1s", &sinks);
    assert!(wait_until(Duration::from_secs(60), || rx.requests() >= 12), "{}", agent.output());
    let sent_so_far = read_events(&reference).len();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let got: BTreeSet<u64> = rx
                .lines()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["event"]["sequence"].as_u64())
                .collect();
            (1..=sent_so_far as u64).all(|s| got.contains(&s))
        }),
        "every event emitted up to then arrived despite the failures and the stall"
    );
    stop(agent);
    // The scan loop kept its pace while the collector held a request for 30 s (the sink gives up on it after
    // its 10 s timeout and sends it again): scans every second through that window, as before it.
    let stall_start = rx.arrivals()[4].duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs_f64();
    let scans: Vec<f64> = read_events(&reference)
        .iter()
        .filter(|e| e["event"]["dataset"] == "ovlaudit.scan")
        .filter_map(|e| e["@timestamp"].as_str().and_then(epoch_seconds))
        .collect();
    let during = scans.iter().filter(|t| **t >= stall_start.floor() && **t < stall_start + 10.0).count();
    assert!(during >= 7, "{during} scans in the 10 s the collector stalled, with a 1 s interval: {scans:?}");
    let worst = scans.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(worst <= 3.0, "largest gap between scans {worst} s with a 1 s interval");
}

#[test]
fn file_sink_follows_a_rename_like_logrotate() {
    let Some(engine) = engine_with_containers() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (agent, reference) = start_agent(dir.path(), &engine, "1s", "");
    assert!(wait_until(Duration::from_secs(20), || count_scans(&reference) >= 2), "{}", agent.output());
    let rotated = dir.path().join("reference.ndjson.1");
    std::fs::rename(&reference, &rotated).expect("rotate");
    assert!(
        wait_until(Duration::from_secs(20), || count_scans(&reference) >= 2),
        "the new file is written: {}",
        agent.output()
    );
    stop(agent);
    let mut all = read_events(&rotated);
    all.extend(read_events(&reference));
    let seqs: Vec<u64> = all.iter().filter_map(|e| e["event"]["sequence"].as_u64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no event lost or repeated across the rotation");
}

#[test]
fn journald_native_protocol_fields() {
    let Some(engine) = engine_with_containers() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("journal.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&socket).expect("bind a datagram socket");
    listener.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let (agent, reference) =
        start_agent(dir.path(), &engine, "1h", &format!("[[sink]]\nuri = \"journald:{}\"\n", socket.display()));
    assert!(wait_until(Duration::from_secs(20), || count_scans(&reference) >= 1), "{}", agent.output());
    let sent = read_events(&reference);
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let n = listener.recv(&mut buf).expect("a datagram");
        got.push(parse_journal_fields(&buf[..n]));
    }
    stop(agent);
    let validator = event_validator();
    for (fields, ev) in got.iter().zip(&sent) {
        let msg: Value = serde_json::from_slice(&fields["MESSAGE"]).expect("MESSAGE is the JSON event");
        assert_eq!(&msg, ev);
        assert_events_valid(&validator, std::slice::from_ref(&msg));
        assert_eq!(fields["SYSLOG_IDENTIFIER"], b"ovlaudit");
        assert_eq!(fields["OVLAUDIT_EVENT_ID"], ev["event"]["id"].as_str().expect("id").as_bytes());
        if let Some(id) = ev["container"]["id"].as_str() {
            assert_eq!(fields["OVLAUDIT_CONTAINER_ID"], id.as_bytes());
        }
    }
}

/// Parses the journal's native format, both `KEY=value\n` and the length-prefixed binary form.
fn parse_journal_fields(mut d: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    while !d.is_empty() {
        let nl = d.iter().position(|b| *b == b'\n').expect("a field ends with a newline");
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            out.insert(String::from_utf8_lossy(&line[..eq]).into_owned(), line[eq + 1..].to_vec());
            d = &d[nl + 1..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().expect("8-byte length")) as usize;
            let start = nl + 9;
            out.insert(key, d[start..start + len].to_vec());
            d = &d[start + len + 1..];
        }
    }
    out
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp (`2026-11-28T16:33:02Z`), via date(1).
fn epoch_seconds(ts: &str) -> Option<f64> {
    let out = Command::new("date").args(["-u", "-d", ts, "+%s.%N"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn unix_stream_and_syslog_datagram_transports_deliver() {
    let Some(engine) = engine_with_containers() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let stream_path = dir.path().join("ndjson.sock");
    let stream = std::os::unix::net::UnixListener::bind(&stream_path).expect("bind unix stream");
    let dgram_path = dir.path().join("log.sock");
    let dgram = std::os::unix::net::UnixDatagram::bind(&dgram_path).expect("bind unix datagram");
    dgram.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    udp.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let sinks = format!(
        "[[sink]]\nuri = \"unix://{}\"\n\n[[sink]]\nuri = \"syslog+unix://{}\"\nfacility = \"local0\"\n\n\
         [[sink]]\nuri = \"syslog+udp://127.0.0.1:{}\"\n",
        stream_path.display(),
        dgram_path.display(),
        udp.local_addr().expect("addr").port()
    );
    let (agent, reference) = start_agent(dir.path(), &engine, "1h", &sinks);
    let (conn, _) = stream.accept().expect("the agent connects");
    assert!(wait_until(Duration::from_secs(20), || count_scans(&reference) >= 1), "{}", agent.output());
    let sent = read_events(&reference);

    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(conn));
    for ev in &sent {
        let line = lines.next().expect("a line per event").expect("read");
        assert_eq!(&serde_json::from_str::<Value>(&line).expect("JSON"), ev);
    }
    let mut buf = vec![0u8; 65536];
    for ev in &sent {
        let n = dgram.recv(&mut buf).expect("a datagram per event");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        // local0 (16) * 8 + info (6) = 134, or + warning (4) = 132, + error (3) = 131, per the event.
        let pri: u32 = msg[1..msg.find('>').expect("PRI")].parse().expect("number");
        assert!([131, 132, 134].contains(&pri), "{msg}");
        let json = &msg[msg.find(" - ").expect("no structured data") + 3..];
        assert_eq!(&serde_json::from_str::<Value>(json).expect("JSON message"), ev);
        let msgid = msg.split(' ').nth(5).expect("MSGID");
        assert_eq!(Some(msgid), ev["event"]["dataset"].as_str());
    }
    for ev in &sent {
        let n = udp.recv(&mut buf).expect("a datagram per event");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(msg.starts_with("<2") || msg.starts_with("<3"), "daemon facility: {msg}");
        let json = &msg[msg.find(" - ").expect("no structured data") + 3..];
        assert_eq!(&serde_json::from_str::<Value>(json).expect("JSON message"), ev);
    }
    stop(agent);
}

#[test]
fn check_sinks_says_which_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("check.ndjson");
    let closed = crate::collectors::free_port();
    let out = Command::new(OVLAUDIT)
        .args(["check-sinks", "--config", "/nonexistent-is-fine-when-flags-are-given.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "a named config file that does not exist is an error");
    let out = Command::new(OVLAUDIT)
        .args([
            "check-sinks",
            "--sink",
            &format!("file:{}", good.display()),
            "--sink",
            &format!("tcp://127.0.0.1:{closed}"),
        ])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "one sink failed: {text}");
    assert!(text.contains(&format!("ok      file:{}", good.display())), "{text}");
    assert!(text.contains(&format!("FAILED  tcp://127.0.0.1:{closed}")) && text.contains("refused"), "{text}");
    let written = read_events(&good);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["event"]["dataset"], "ovlaudit.check");
    assert_events_valid(&event_validator(), &written);
}
