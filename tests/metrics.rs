//! Prometheus metrics: a real Prometheus (Debian's `prometheus`) started on loopback scrapes `ovlaudit
//! run --metrics-listen` and answers queries through its HTTP API, compared with the private dockerd's
//! `SizeRw`; every query of the Grafana dashboard is sent to that Prometheus, which must accept it; and
//! `report --format prometheus` is checked by Prometheus' own `promtool check metrics`.

use crate::agent::{empty_config, Agent};
use crate::harness::start_engine;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// `path` if it exists; else `None` outside CI (the skip printed), and a panic under `CI=true`.
fn tool(path: &str) -> Option<&str> {
    if Path::new(path).is_file() {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{path} is missing (Debian package prometheus, installed by .ci/run)");
    }
    eprintln!("SKIP: {path} is missing (Debian package prometheus)");
    None
}

/// A loopback port free right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// `GET path` from 127.0.0.1:`port` (HTTP/1.0, so the body ends with the connection): status, headers
/// (lower-cased names) and body.
fn http_get(port: u16, path: &str, accept: Option<&str>) -> Result<(u16, String, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read from {port}: {e}"))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no header end in {text:?}"))?;
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("status of {head:?}"))?;
    Ok((status, head.to_lowercase(), body.to_owned()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server of the test's own, on loopback, with its storage in a temporary directory; killed
/// (by its pid) when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Prometheus {
    /// Starts one scraping `target` (host:port) every second and waits until its API answers.
    fn start(binary: &str, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: ovlaudit\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
        let p = Prometheus { child, port, _dir: dir, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http_get(port, "/-/ready", None), Ok((200, _, _))) {
            assert!(Instant::now() < deadline, "prometheus not ready in 30 s:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/api/v1/query?query=q`: the parsed answer, whatever its status.
    fn query(&self, q: &str) -> Value {
        let (_, _, body) = http_get(self.port, &format!("/api/v1/query?query={}", percent_encode(q)), None)
            .unwrap_or_else(|e| panic!("query {q}: {e}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("query {q}: not JSON ({e}): {body}"))
    }

    /// Waits until `q` returns at least one series and returns the result vector.
    fn wait_series(&self, q: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.query(q);
            assert_eq!(answer["status"], "success", "query {q}: {answer}");
            if let Some(v) = answer["data"]["result"].as_array().filter(|v| !v.is_empty()) {
                return v.clone();
            }
            assert!(Instant::now() < deadline, "no series for {q} in {timeout:?}; targets: {}", self.targets());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn targets(&self) -> String {
        http_get(self.port, "/api/v1/targets", None).map(|r| r.2).unwrap_or_else(|e| e)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn value_of(series: &Value) -> f64 {
    series["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("value of {series}"))
}

/// Every `expr` of the dashboard, with Grafana's variables replaced by what Grafana would send: `.*` for a
/// multi-value variable whose "All" is chosen, a duration for `$__rate_interval` and `$__range`.
fn dashboard_exprs() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/ovlaudit.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dashboard, &mut exprs);
    let vars: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| v["name"].as_str().expect("variable name").to_owned())
        .collect();
    exprs
        .into_iter()
        .map(|e| {
            let mut e = e.replace("$__rate_interval", "1m").replace("$__range", "1h");
            for v in &vars {
                e = e.replace(&format!("${{{v}}}"), ".*").replace(&format!("${v}"), ".*");
            }
            assert!(!e.contains('$'), "a variable the test does not know in {e}");
            e
        })
        .collect()
}

/// A real Prometheus scrapes the agent and answers with the container's writable bytes as the engine
/// counts them (`SizeRw`), its files and the agent's scan counter; the dashboard's queries all parse.
#[test]
fn prometheus_scrapes_the_agent_and_its_answers_match_the_engine() {
    let Some(prometheus) = tool(PROMETHEUS) else { return };
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let id = engine.docker(&[
        "run",
        "-d",
        "--name",
        "m1",
        "bb:1",
        "sh",
        "-c",
        "head -c 123457 /dev/zero > /big; mkdir /d; echo hi > /d/f; sleep 300",
    ]);
    // The files are written when the engine's size says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    let size_rw = loop {
        let list = engine.api_get("/containers/json?all=1&size=1");
        let c = list.as_array().expect("list").iter().find(|c| c["Id"] == id.as_str()).cloned().expect("m1 listed");
        let size = c["SizeRw"].as_u64().unwrap_or(0);
        if size >= 123457 + 3 {
            break size;
        }
        assert!(Instant::now() < deadline, "m1 never wrote its files: {c}");
        std::thread::sleep(Duration::from_millis(200));
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let config = empty_config(dir.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    let agent = Agent::start(
        &["--config", &config, "--docker-root", &root, "--interval", "1h", "--metrics-listen", &listen],
        &[],
    );
    agent.wait_until(Duration::from_secs(30), "the first scan", |s| !s.is_empty());

    // The agent itself: both formats, by what the scraper accepts.
    let (status, head, text) = http_get(port, "/metrics", None).expect("GET /metrics");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(text.contains("# TYPE ovlaudit_scans_total counter"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
    let (status, head, om) =
        http_get(port, "/metrics", Some("application/openmetrics-text; version=1.0.0")).expect("om");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: application/openmetrics-text"), "{head}");
    assert!(om.contains("# TYPE ovlaudit_scans counter") && om.ends_with("# EOF\n"), "{om}");
    assert_eq!(http_get(port, "/other", None).expect("404").0, 404);

    let prom = Prometheus::start(prometheus, &listen);
    let up = prom.wait_series("up{job=\"ovlaudit\"} == 1", Duration::from_secs(30));
    assert_eq!(up.len(), 1, "{up:?}");

    let q = format!("ovlaudit_container_writable_apparent_bytes{{id=\"{id}\"}}");
    let series = prom.wait_series(&q, Duration::from_secs(30));
    assert_eq!(series.len(), 1, "{series:?}");
    let m = &series[0]["metric"];
    assert_eq!(m["engine"], "docker", "{m}");
    assert_eq!(m["name"], "m1", "{m}");
    assert_eq!(m["image"], "bb:1", "{m}");
    assert_eq!(value_of(&series[0]) as u64, size_rw, "Prometheus' answer vs the engine's SizeRw");
    let files = prom.wait_series(&format!("ovlaudit_container_writable_files{{id=\"{id}\"}}"), Duration::from_secs(5));
    // /big and /d/f (busybox sh may leave no other file in the layer).
    assert!(value_of(&files[0]) >= 2.0, "{files:?}");
    let allocated = prom
        .wait_series(&format!("ovlaudit_container_writable_allocated_bytes{{id=\"{id}\"}}"), Duration::from_secs(5));
    assert!(value_of(&allocated[0]) >= 123457.0, "{allocated:?}");
    let running = prom.wait_series(&format!("ovlaudit_container_running{{id=\"{id}\"}}"), Duration::from_secs(5));
    assert_eq!(value_of(&running[0]), 1.0);
    let scans = prom.wait_series("ovlaudit_scans_total", Duration::from_secs(5));
    assert!(value_of(&scans[0]) >= 1.0, "{scans:?}");
    let failures = prom.wait_series("ovlaudit_scan_failures_total", Duration::from_secs(5));
    assert_eq!(value_of(&failures[0]), 0.0);
    let images = prom.wait_series("ovlaudit_image_size_bytes{image=\"bb:1\"}", Duration::from_secs(5));
    let engine_image = engine.api_get("/images/bb:1/json");
    assert_eq!(value_of(&images[0]) as u64, engine_image["Size"].as_u64().expect("Size"), "image size vs engine");

    // Every query of the dashboard parses and evaluates.
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for e in &exprs {
        let answer = prom.query(e);
        assert_eq!(answer["status"], "success", "dashboard query {e}: {answer}");
    }
    // And one that does not parse is refused, so the loop above proves something.
    assert_eq!(prom.query("sum by (")["status"], "error");
    engine.docker(&["rm", "-f", "m1"]);
}

/// `report --format prometheus` passes `promtool check metrics` (the format and the naming conventions).
#[test]
fn report_format_prometheus_passes_promtool() {
    let Some(promtool) = tool(PROMTOOL) else { return };
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    engine.docker(&["run", "-d", "--name", "t1", "bb:1", "sh", "-c", "echo x > /x; sleep 300"]);
    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    let out = Command::new(crate::common::OVLAUDIT)
        .args(["report", "--format", "prometheus", "--docker-root", &root])
        .output()
        .expect("run ovlaudit");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("ovlaudit_container_writable_apparent_bytes{engine=\"docker\""), "{text}");
    assert!(!text.contains("ovlaudit_scans_total"), "a report is no agent: {text}");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    check.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let res = check.wait_with_output().expect("promtool");
    assert!(
        res.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    engine.docker(&["rm", "-f", "t1"]);
}

/// `metrics_listen` in the file and `--metrics-listen` reach the configuration `check-config` prints; an
/// address that is no IP:PORT is refused with the file, line and reason.
#[test]
fn metrics_listen_is_configured_by_file_and_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    let f = file.to_str().expect("utf-8");
    std::fs::write(&file, "metrics_listen = \"127.0.0.1:9469\"\n").expect("write");
    let out = crate::common::ovlaudit(&["check-config", "--config", f]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("metrics_listen = \"127.0.0.1:9469\"\n"));
    let out = crate::common::ovlaudit(&["check-config", "--config", f, "--metrics-listen", "[::1]:9470"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("metrics_listen = \"[::1]:9470\"\n"));
    std::fs::write(&file, "metrics_listen = \"localhost\"\n").expect("write");
    let out = crate::common::ovlaudit(&["check-config", "--config", f]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{f}:1:")) && err.contains("address"), "{err}");
}

/// Whether something accepts connections on 127.0.0.1:`port`.
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// `ovlaudit_sink_events_sent_total` of the one sink, from a scrape.
fn sink_sent(port: u16) -> Option<u64> {
    let (_, _, text) = http_get(port, "/metrics", None).ok()?;
    let line = text.lines().find(|l| l.starts_with("ovlaudit_sink_events_sent_total{sink="))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// The sink counters on `/metrics` are read at the scrape, not copied at the end of a scan: once the
/// first scan's events have all come out of the agent's standard output sink, a scrape counts every one
/// of them as sent although no scan ran since (the interval is an hour).
#[test]
fn sink_counters_are_live_between_scans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = crate::run_cli::bare_root(dir.path());
    let port = free_port();
    let config = dir.path().join("c.toml");
    let text =
        format!("interval = \"1h\"\nwatch = false\nsinks = [\"stdout\"]\nmetrics_listen = \"127.0.0.1:{port}\"\n");
    std::fs::write(&config, text).expect("write");
    let agent =
        Agent::start(&["--config", config.to_str().expect("utf-8"), "--root", root.to_str().expect("utf-8")], &[]);
    agent.wait_until(Duration::from_secs(10), "the first scan", |s| s.len() == 1);
    let shipped = agent.events().len() as u64;
    assert!(shipped >= 2, "a scan ships at least its summary and scan events");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink_sent(port) != Some(shipped) {
        assert!(Instant::now() < deadline, "sent is {:?}, not the {shipped} events shipped", sink_sent(port));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(agent.scans().len(), 1, "no scan ran in between");
    let (_, _, text) = http_get(port, "/metrics", None).expect("scrape");
    assert!(text.contains("ovlaudit_sink_events_queued{sink=") && text.contains("} 0\n"), "{text}");
}

/// A reload that changes `metrics_listen` moves the listener: the new address serves the same agent's
/// metrics and the old one is closed; an address that cannot be bound keeps the running one and says
/// so; unsetting it stops serving.
#[test]
fn reload_moves_the_metrics_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = crate::run_cli::bare_root(dir.path());
    let config = dir.path().join("c.toml");
    let write = |listen: Option<u16>| {
        let mut text = "interval = \"1h\"\nwatch = false\n".to_owned();
        if let Some(p) = listen {
            text.push_str(&format!("metrics_listen = \"127.0.0.1:{p}\"\n"));
        }
        std::fs::write(&config, text).expect("write");
    };
    let (first, second) = (free_port(), free_port());
    write(Some(first));
    let agent =
        Agent::start(&["--config", config.to_str().expect("utf-8"), "--root", root.to_str().expect("utf-8")], &[]);
    agent.wait_until(Duration::from_secs(10), "the first scan", |s| s.len() == 1);
    let (status, _, text) = http_get(first, "/metrics", None).expect("scrape the first address");
    assert_eq!(status, 200);
    assert!(text.contains("ovlaudit_scans_total 1\n"), "{text}");

    write(Some(second));
    agent.signal(libc::SIGHUP);
    agent.wait_log(Duration::from_secs(5), "configuration reloaded");
    let (status, _, text) = http_get(second, "/metrics", None).expect("scrape the new address");
    assert_eq!(status, 200);
    assert!(text.contains("ovlaudit_scans_total "), "the same agent's counters: {text}");
    assert!(!listening(first), "the old address is closed");

    // A port the test holds: the reload keeps serving on the running address.
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    write(Some(held.local_addr().expect("addr").port()));
    agent.signal(libc::SIGHUP);
    agent.wait_log(Duration::from_secs(5), &format!("still serving on 127.0.0.1:{second}"));
    assert_eq!(http_get(second, "/metrics", None).expect("still served").0, 200);

    write(None);
    agent.signal(libc::SIGHUP);
    agent.wait_log(Duration::from_secs(5), "no longer serving metrics");
    assert!(!listening(second), "unset: nothing listens");
}
