//! Connections to collectors and sending one batch over each kind. A send either delivers the whole batch
//! as far as the transport can tell, or fails; the worker decides what to retry.

use super::queue::Item;
use super::uri::SinkKind;
use super::wire::{journald_datagram, octet_counted, syslog_5424};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket, UnixDatagram, UnixStream};

/// How a file sink makes its writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// `fdatasync` after every batch (one per scan): nothing acknowledged is lost on a crash.
    #[default]
    Batch,
    /// Leave it to the kernel's writeback.
    Never,
}

/// Everything a transport needs besides the batch. Not `Debug`: it holds credentials.
#[derive(Clone)]
pub struct TransportOptions {
    /// Extra HTTP headers (auth tokens); never logged.
    pub headers: Vec<(String, String)>,
    /// File sink durability.
    pub fsync: Fsync,
    /// Syslog facility number.
    pub facility: u8,
    /// Host name for syslog headers.
    pub hostname: String,
    /// Bound on one connect or one batch's send.
    pub timeout: Duration,
}

/// An open connection.
#[derive(Debug)]
pub enum Conn {
    /// Standard output, written by the one [`StdoutWriter`] thread of the process.
    Stdout(&'static StdoutWriter),
    /// An append-mode file and the identity it had when opened, to notice rotation.
    File {
        /// The open file.
        file: std::fs::File,
        /// Its path.
        path: PathBuf,
        /// `(dev, ino)` at open.
        id: (u64, u64),
    },
    /// A TCP stream.
    Tcp(TcpStream),
    /// A unix stream.
    Unix(UnixStream),
    /// A UDP socket, connected.
    Udp(UdpSocket),
    /// A unix datagram socket, connected.
    Dgram(UnixDatagram),
    /// HTTP: one connection per batch, made in [`send`].
    Http,
}

/// Opens a connection for `kind`.
pub async fn connect(kind: &SinkKind, opts: &TransportOptions) -> io::Result<Conn> {
    let t = opts.timeout;
    Ok(match kind {
        SinkKind::Stdout => Conn::Stdout(StdoutWriter::get()),
        SinkKind::File(p) => open_file(p.clone()).await?,
        SinkKind::Tcp(a) | SinkKind::SyslogTcp(a) => {
            let s = timeout(t, TcpStream::connect(a.as_str())).await??;
            s.set_nodelay(true)?;
            Conn::Tcp(s)
        }
        SinkKind::Unix(p) => Conn::Unix(timeout(t, UnixStream::connect(p)).await??),
        SinkKind::SyslogUdp(a) => {
            let bind = if a.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
            let s = UdpSocket::bind(bind).await?;
            s.connect(a.as_str()).await?;
            Conn::Udp(s)
        }
        SinkKind::SyslogUnix(p) | SinkKind::Journald(p) => {
            let s = UnixDatagram::unbound()?;
            s.connect(p)?;
            Conn::Dgram(s)
        }
        SinkKind::Http { .. } => Conn::Http,
    })
}

async fn open_file(path: PathBuf) -> io::Result<Conn> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let m = file.metadata()?;
        Ok(Conn::File { id: (m.dev(), m.ino()), file, path })
    })
    .await
    .map_err(io::Error::other)?
}

async fn timeout<F: std::future::Future>(t: Duration, f: F) -> io::Result<F::Output> {
    tokio::time::timeout(t, f)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no progress in {t:?}")))
}

/// Whether a file sink's path no longer names the file it has open (renamed or removed by logrotate).
pub fn file_rotated(path: &Path, id: (u64, u64)) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => (m.dev(), m.ino()) != id,
        Err(_) => true,
    }
}

/// For a stream collector that never writes back: has the peer closed the connection? (A killed
/// collector's socket reads as end-of-file at once, before our next write could vanish into it.)
pub fn peer_closed(conn: &Conn) -> bool {
    let mut buf = [0u8; 512];
    let r = match conn {
        Conn::Tcp(s) => s.try_read(&mut buf),
        Conn::Unix(s) => s.try_read(&mut buf),
        _ => return false,
    };
    match r {
        Ok(0) => true,
        Ok(_) => false, // a collector that talks back; its bytes are not ours to interpret
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Waits until a stream connection becomes readable (closed by the peer, usually); pending forever for
/// other connections.
pub async fn readable(conn: &Conn) {
    // An error here means the socket is broken; the caller's `peer_closed` check reports it.
    let _ = match conn {
        Conn::Tcp(s) => s.readable().await,
        Conn::Unix(s) => s.readable().await,
        _ => std::future::pending().await,
    };
}

/// The largest datagram each datagram transport takes: UDP's payload limit over IPv4, and what a unix
/// datagram socket takes with the kernel's default buffer (`net.core.wmem_default`, 212,992 bytes, less
/// its overhead). `None` for stream, file and HTTP transports, which take any size.
pub fn datagram_limit(kind: &SinkKind) -> Option<usize> {
    match kind {
        SinkKind::SyslogUdp(_) => Some(65_507),
        SinkKind::SyslogUnix(_) | SinkKind::Journald(_) => Some(128 << 10),
        _ => None,
    }
}

/// Bytes a datagram adds around an event's JSON (syslog header or journald fields), at most.
pub const DATAGRAM_OVERHEAD: usize = 1024;

/// Sends one batch. `Ok(n)` means the transport accepted all of it (for HTTP: a 2xx answer) but for `n`
/// datagrams it refused as too large (`EMSGSIZE`): those are dropped, since they would fail again.
pub async fn send(conn: &mut Conn, kind: &SinkKind, batch: &[Item], opts: &TransportOptions) -> io::Result<u64> {
    let t = opts.timeout;
    match conn {
        Conn::Stdout(out) => {
            let buf = ndjson(batch);
            let out: &'static StdoutWriter = out;
            tokio::task::spawn_blocking(move || out.write(buf, t)).await.map_err(io::Error::other)??;
            Ok(0)
        }
        Conn::File { file, path, id } => {
            if file_rotated(path, *id) {
                if let Conn::File { file: f, id: i, .. } = open_file(path.clone()).await? {
                    *file = f;
                    *id = i;
                }
            }
            let buf = ndjson(batch);
            let f = file.try_clone()?;
            let fsync = opts.fsync;
            tokio::task::spawn_blocking(move || append_whole_lines(&f, &buf, fsync))
                .await
                .map_err(io::Error::other)??;
            Ok(0)
        }
        Conn::Tcp(_) | Conn::Unix(_) => {
            if peer_closed(conn) {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "collector closed the connection"));
            }
            let buf = match kind {
                SinkKind::SyslogTcp(_) => {
                    let mut b = Vec::new();
                    for it in batch {
                        b.extend(octet_counted(&syslog_line(it, opts)));
                    }
                    b
                }
                _ => ndjson(batch),
            };
            let w = async {
                match conn {
                    Conn::Tcp(s) => s.write_all(&buf).await,
                    Conn::Unix(s) => s.write_all(&buf).await,
                    _ => Ok(()),
                }
            };
            timeout(t, w).await??;
            Ok(0)
        }
        Conn::Udp(s) => {
            let mut too_large = 0;
            for it in batch {
                too_large += datagram_sent(timeout(t, s.send(&syslog_line(it, opts))).await?)?;
            }
            Ok(too_large)
        }
        Conn::Dgram(s) => {
            let mut too_large = 0;
            for it in batch {
                let d = match kind {
                    SinkKind::Journald(_) => journald_datagram(it),
                    _ => syslog_line(it, opts),
                };
                too_large += datagram_sent(timeout(t, s.send(&d)).await?)?;
            }
            Ok(too_large)
        }
        Conn::Http => match kind {
            SinkKind::Http { authority, path } => {
                timeout(t, http_post(authority, path, batch, opts)).await??;
                Ok(0)
            }
            _ => Err(io::Error::other("HTTP connection for a non-HTTP sink")),
        },
    }
}

/// 1 for a datagram the socket refused as too large (dropped: it would fail the same way again), 0 for
/// one sent; any other failure is the connection's.
fn datagram_sent(r: io::Result<usize>) -> io::Result<u64> {
    match r {
        Ok(_) => Ok(0),
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Ok(1),
        Err(e) => Err(e),
    }
}

/// Appends `buf` (whole NDJSON lines) to `file`, or nothing: when a write fails part way (`ENOSPC`), the
/// file is cut back to where it ended before, so no partial line is left for the retried batch to follow.
fn append_whole_lines(file: &std::fs::File, buf: &[u8], fsync: Fsync) -> io::Result<()> {
    use std::io::Write;
    let before = file.metadata()?.len();
    let mut f = file;
    let written = f.write_all(buf).and_then(|()| if fsync == Fsync::Batch { f.sync_data() } else { Ok(()) });
    if let Err(e) = written {
        if let Err(cut) = file.set_len(before) {
            return Err(io::Error::new(e.kind(), format!("{e}; and cutting the partial line back off failed: {cut}")));
        }
        return Err(e);
    }
    Ok(())
}

/// The process's one writer to standard output: a thread that does the blocking writes, one batch at a
/// time. A sink waits for its batch at most its timeout; when stdout is not read, the batch being written
/// stays with the thread (it is written once stdout drains) and further sends fail at once instead of
/// queueing more: a reader that stops costs one buffer and one thread, never more.
#[derive(Debug)]
pub struct StdoutWriter {
    state: std::sync::Mutex<StdoutState>,
    changed: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct StdoutState {
    job: Option<Vec<u8>>,
    busy: bool,
    submitted: u64,
    done: u64,
    result: Option<Result<(), (io::ErrorKind, String)>>,
}

impl StdoutWriter {
    /// The writer, its thread started on first use.
    pub fn get() -> &'static StdoutWriter {
        static WRITER: std::sync::OnceLock<&'static StdoutWriter> = std::sync::OnceLock::new();
        WRITER.get_or_init(|| {
            let w: &'static StdoutWriter = Box::leak(Box::new(StdoutWriter {
                state: std::sync::Mutex::new(StdoutState::default()),
                changed: std::sync::Condvar::new(),
            }));
            // If the thread cannot start, every write times out and says so; nothing else breaks.
            let _ = std::thread::Builder::new().name("ovlaudit-stdout".into()).spawn(move || w.run());
            w
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StdoutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        use std::io::Write;
        loop {
            let buf = {
                let mut s = self.lock();
                loop {
                    if let Some(b) = s.job.take() {
                        break b;
                    }
                    s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                }
            };
            let mut out = std::io::stdout().lock();
            let r = out.write_all(&buf).and_then(|()| out.flush());
            drop(out);
            let mut s = self.lock();
            s.busy = false;
            s.done = s.submitted;
            s.result = Some(r.map_err(|e| (e.kind(), e.to_string())));
            self.changed.notify_all();
        }
    }

    /// Writes `buf`, waiting at most `t` in all (blocking: call from a blocking task).
    pub fn write(&self, buf: Vec<u8>, t: Duration) -> io::Result<()> {
        let deadline = std::time::Instant::now() + t;
        let timed_out = || {
            io::Error::new(io::ErrorKind::TimedOut, format!("stdout is not being read: a write is blocked for {t:?}"))
        };
        let mut s = self.lock();
        while s.busy {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            s = self.changed.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        s.submitted += 1;
        let mine = s.submitted;
        s.job = Some(buf);
        s.busy = true;
        self.changed.notify_all();
        while s.done < mine {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            s = self.changed.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        match s.result.clone() {
            Some(Err((kind, why))) => Err(io::Error::new(kind, why)),
            _ => Ok(()),
        }
    }
}

fn syslog_line(it: &Item, opts: &TransportOptions) -> Vec<u8> {
    let now = collector::scan::rfc3339(std::time::SystemTime::now());
    syslog_5424(it, opts.facility, &now, &opts.hostname, std::process::id())
}

fn ndjson(batch: &[Item]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(batch.iter().map(|i| i.json.len() + 1).sum());
    for it in batch {
        buf.extend_from_slice(it.json.as_bytes());
        buf.push(b'\n');
    }
    buf
}

/// One `POST` of the batch as NDJSON; only a 2xx status counts as delivered.
async fn http_post(authority: &str, path: &str, batch: &[Item], opts: &TransportOptions) -> io::Result<()> {
    let body = ndjson(batch);
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: ovlaudit/{}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (k, v) in &opts.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect(authority).await?;
    s.write_all(req.as_bytes()).await?;
    s.write_all(&body).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // The status line is all that decides; read until it is complete.
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "collector closed the connection without an answer",
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 8192 {
            return Err(io::Error::other("answer has no status line"));
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
    match status {
        Some(c) if (200..300).contains(&c) => Ok(()),
        Some(c) => Err(io::Error::other(format!("collector answered HTTP {c}"))),
        None => Err(io::Error::other("collector's answer is not HTTP")),
    }
}
