//! Real log collectors and plain receivers for the shipping tests, each started by the test on loopback
//! and stopped (by the pid we started, never by name) when dropped, even when the test failed.
//!
//! rsyslog comes from Debian's `rsyslog` package. syslog-ng's Debian package conflicts with rsyslog's, so
//! `.ci/run` unpacks `syslog-ng-core` into a directory of its own (`OVLAUDIT_SYSLOG_NG_ROOT`, default
//! `/opt/ovlaudit-test/syslog-ng`) and it runs from there.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether a missing collector must fail the test (CI) rather than skip it.
pub fn required() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A free loopback TCP port (bound, then released for the collector to take).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local addr").port()
}

/// Waits until `f` is true, polling; false on timeout.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// A child process stopped with SIGTERM (then SIGKILL) on drop.
pub struct Daemon {
    child: Child,
    what: String,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd`, its stdout and stderr into `log`.
    pub fn spawn(mut cmd: Command, what: &str, log: &Path) -> Daemon {
        let f = std::fs::File::create(log).expect("create log file");
        cmd.stdin(Stdio::null()).stdout(f.try_clone().expect("dup log")).stderr(f);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        Daemon { child, what: what.to_owned(), log: log.to_owned() }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to our child.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the child to exit, up to `timeout`; its exit status, if it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.what, self.output());
        }
    }
}

/// rsyslog with `imtcp` on a loopback port, `mmjsonparse` on every message, and `omfile` writing the
/// parsed JSON (`$!all-json`) one per line; what does not parse goes to a second file.
pub struct Rsyslog {
    /// The daemon.
    pub daemon: Daemon,
    /// Its TCP port.
    pub port: u16,
    /// Parsed events, one JSON object per line.
    pub out: PathBuf,
    /// Messages that did not parse as JSON.
    pub failed: PathBuf,
}

impl Rsyslog {
    /// Starts rsyslogd in `dir`; `None` (after a SKIP line) when rsyslogd is not installed outside CI.
    pub fn start(dir: &Path) -> Option<Rsyslog> {
        let bin = Path::new("/usr/sbin/rsyslogd");
        if !bin.exists() {
            assert!(!required(), "rsyslogd is not installed (apt-get install rsyslog)");
            eprintln!("SKIP: no rsyslogd at {}", bin.display());
            return None;
        }
        let port = free_port();
        let out = dir.join("rsyslog.out");
        let failed = dir.join("rsyslog.failed");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{dir}" maxMessageSize="64k")
module(load="imtcp")
module(load="mmjsonparse")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="ovlaudit")
template(name="json" type="string" string="%$!all-json%\n")
ruleset(name="ovlaudit") {{
  action(type="mmjsonparse" cookie="")
  if $parsesuccess == "OK" then {{
    action(type="omfile" file="{out}" template="json")
  }} else {{
    action(type="omfile" file="{failed}")
  }}
}}
"#,
                dir = dir.display(),
                out = out.display(),
                failed = failed.display()
            ),
        )
        .expect("write rsyslog.conf");
        let mut cmd = Command::new(bin);
        cmd.args(["-n", "-f"]).arg(&conf).arg("-i").arg(dir.join("rsyslog.pid"));
        let daemon = Daemon::spawn(cmd, "rsyslogd", &dir.join("rsyslog.log"));
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "rsyslogd did not listen on {port}"
        );
        Some(Rsyslog { daemon, port, out, failed })
    }
}

/// syslog-ng with a `syslog()` source (RFC 5424, octet counting) on a loopback port, `json-parser()` on
/// every message, and `file()` writing `<event.id as syslog-ng parsed it> <message>` per line.
pub struct SyslogNg {
    /// The daemon.
    pub daemon: Daemon,
    /// Its TCP port.
    pub port: u16,
    /// One line per message that parsed as JSON.
    pub out: PathBuf,
}

impl SyslogNg {
    /// Where the unpacked `syslog-ng-core` lives.
    pub fn root() -> PathBuf {
        std::env::var_os("OVLAUDIT_SYSLOG_NG_ROOT")
            .map_or_else(|| PathBuf::from("/opt/ovlaudit-test/syslog-ng"), PathBuf::from)
    }

    /// Starts syslog-ng in `dir`; `None` (after a SKIP line) when it is not available outside CI.
    pub fn start(dir: &Path) -> Option<SyslogNg> {
        let root = Self::root();
        let bin = root.join("usr/sbin/syslog-ng");
        if !bin.exists() {
            assert!(!required(), "no syslog-ng at {} (see .ci/run)", bin.display());
            eprintln!("SKIP: no syslog-ng at {}", bin.display());
            return None;
        }
        let port = free_port();
        let out = dir.join("syslog-ng.out");
        let conf = dir.join("syslog-ng.conf");
        std::fs::write(
            &conf,
            format!(
                r#"@version: 3.38
source s_ovl {{ syslog(ip("127.0.0.1") port({port}) transport("tcp") log-msg-size(65536)); }};
parser p_json {{ json-parser(prefix(".json.")); }};
destination d_file {{ file("{out}" template("${{.json.event.id}} ${{MESSAGE}}\n")); }};
log {{ source(s_ovl); parser(p_json); destination(d_file); }};
"#,
                out = out.display()
            ),
        )
        .expect("write syslog-ng.conf");
        let mut cmd = Command::new(&bin);
        cmd.env("LD_LIBRARY_PATH", root.join("usr/lib/syslog-ng"))
            .args(["-F", "-e", "--no-caps", "-f"])
            .arg(&conf)
            .arg(format!("--module-path={}", root.join("usr/lib/syslog-ng/3.38").display()))
            .arg(format!("--pidfile={}", dir.join("syslog-ng.pid").display()))
            .arg(format!("--persist-file={}", dir.join("syslog-ng.persist").display()))
            .arg(format!("--control={}", dir.join("syslog-ng.ctl").display()));
        let daemon = Daemon::spawn(cmd, "syslog-ng", &dir.join("syslog-ng.log"));
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "syslog-ng did not listen on {port}: {}",
            daemon.output()
        );
        Some(SyslogNg { daemon, port, out })
    }
}

/// A plain NDJSON-over-TCP receiver that can be "killed" (listener and every connection closed with a
/// reset, unread data lost, as when a collector process dies) and restarted on the same port.
pub struct TcpReceiver {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    up: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl TcpReceiver {
    /// Starts listening on a free loopback port.
    pub fn start() -> TcpReceiver {
        let mut r = TcpReceiver {
            port: free_port(),
            lines: Arc::new(Mutex::new(Vec::new())),
            up: Arc::new(AtomicBool::new(false)),
            thread: None,
            stop: Arc::new(AtomicBool::new(false)),
        };
        r.restart();
        r
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every complete line received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Closes the listener and every connection abruptly.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.up.store(false, Ordering::SeqCst);
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.stop = Arc::new(AtomicBool::new(false));
        let listener = (0..50)
            .find_map(|_| {
                TcpListener::bind(("127.0.0.1", self.port)).ok().or_else(|| {
                    std::thread::sleep(Duration::from_millis(100));
                    None
                })
            })
            .expect("rebind the receiver's port");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let (lines, stop, up) = (self.lines.clone(), self.stop.clone(), self.up.clone());
        up.store(true, Ordering::SeqCst);
        self.thread = Some(std::thread::spawn(move || {
            let mut conns: Vec<(TcpStream, Vec<u8>)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok((s, _)) = listener.accept() {
                    s.set_nonblocking(true).expect("nonblocking stream");
                    conns.push((s, Vec::new()));
                }
                let mut buf = [0u8; 65536];
                conns.retain_mut(|(s, pending)| loop {
                    match s.read(&mut buf) {
                        Ok(0) => return false,
                        Ok(n) => {
                            pending.extend_from_slice(&buf[..n]);
                            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = pending.drain(..=i).collect();
                                if let Ok(mut l) = lines.lock() {
                                    l.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                        Err(_) => return false,
                    }
                });
                std::thread::sleep(Duration::from_millis(5));
            }
            // Dying: reset every connection so that unread data is lost, as with a killed process.
            for (s, _) in conns {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
                let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        std::mem::size_of::<libc::linger>() as u32,
                    );
                }
            }
        }));
    }
}

impl Drop for TcpReceiver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the HTTP receiver does with the n-th request (0-based).
pub type HttpPolicy = Arc<dyn Fn(usize) -> (u16, Duration) + Send + Sync>;

/// A minimal HTTP/1.1 receiver: collects the bodies of requests it answers 2xx, and answers each
/// request as the policy says (status, and a delay before answering).
pub struct HttpReceiver {
    port: u16,
    arrivals: Arc<Mutex<Vec<std::time::SystemTime>>>,
    accepted: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpReceiver {
    /// Starts on a free loopback port.
    pub fn start(policy: HttpPolicy) -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let (acc, req, st, arr) = (accepted.clone(), requests.clone(), stop.clone(), arrivals.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let n = req.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut a) = arr.lock() {
                    a.push(std::time::SystemTime::now());
                }
                let (acc, policy, st) = (acc.clone(), policy.clone(), st.clone());
                // One thread per request, so a stalled answer does not hold up the next connection.
                std::thread::spawn(move || serve(s, n, &*policy, &acc, &st));
            }
        });
        HttpReceiver { port, arrivals, accepted, requests, stop, thread: Some(thread) }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// NDJSON lines of every request answered 2xx.
    pub fn lines(&self) -> Vec<String> {
        self.accepted.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::SystemTime> {
        self.arrivals.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Requests seen.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(
    s: TcpStream,
    n: usize,
    policy: &(dyn Fn(usize) -> (u16, Duration) + Send + Sync),
    acc: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut len = 0usize;
    let mut content_type = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if let Some(v) = lower.strip_prefix("content-type:") {
            content_type = v.trim().to_owned();
        }
    }
    let mut body = vec![0u8; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let (status, delay) = policy(n);
    let end = Instant::now() + delay;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if (200..300).contains(&status) && content_type == "application/x-ndjson" {
        if let Ok(mut a) = acc.lock() {
            a.extend(String::from_utf8_lossy(&body).lines().map(str::to_owned));
        }
    }
    let mut w = s;
    let _ = write!(w, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
