//! The service manager's notification protocol (`sd_notify(3)`), spoken by hand: newline-separated
//! `KEY=VALUE` datagrams to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract
//! socket), and the watchdog period from `$WATCHDOG_USEC` (for this process only when `$WATCHDOG_PID` is
//! unset or names it). Without `$NOTIFY_SOCKET` every call does nothing, so the same binary runs by hand.
//!
//! The socket is non-blocking: when the service manager does not read (its queue full, or a socket nobody
//! serves), a message is dropped and counted rather than stalling the scan loop that sends it.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager, or nothing when not run by one.
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr, String)>,
    watchdog: Option<Duration>,
    warned: bool,
    dropped: u64,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    pub fn from_env() -> Notifier {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Notifier::new(var("NOTIFY_SOCKET").as_deref(), var("WATCHDOG_USEC").as_deref(), var("WATCHDOG_PID").as_deref())
    }

    fn new(socket: Option<&str>, watchdog_usec: Option<&str>, watchdog_pid: Option<&str>) -> Notifier {
        let socket = socket.and_then(|name| match open(name) {
            Ok((sock, addr)) => Some((sock, addr, name.to_owned())),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={name}: {e}; not notifying the service manager");
                None
            }
        });
        let for_us = match watchdog_pid {
            Some(p) => p.trim().parse::<u32>().ok() == Some(std::process::id()),
            None => true,
        };
        let watchdog = watchdog_usec
            .filter(|_| for_us)
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0)
            .map(Duration::from_micros);
        Notifier { socket, watchdog, warned: false, dropped: 0 }
    }

    /// The watchdog period the service manager expects pings within, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (`READY=1`, `STATUS=…`, several lines at once), never waiting: a message the
    /// socket cannot take now is dropped. A failure is logged once: the service manager going away must
    /// not stop the audit.
    pub fn notify(&mut self, message: &str) {
        let Some((sock, addr, name)) = &self.socket else {
            return;
        };
        if let Err(e) = sock.send_to_addr(message.as_bytes(), addr) {
            self.dropped += 1;
            if !self.warned {
                tracing::warn!("cannot notify the service manager at {name}: {e}");
                self.warned = true;
            }
        }
    }

    /// `STATUS=` with a one-line text (newlines would start new keys, so they are replaced).
    pub fn status(&mut self, text: &str) {
        self.notify(&format!("STATUS={}", text.replace('\n', " ")));
    }
}

fn open(name: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match name.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
        None => {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an absolute path or @abstract name"))
        }
    };
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    Ok((sock, addr))
}

/// `CLOCK_MONOTONIC` in microseconds, as `RELOADING=1` wants it in `MONOTONIC_USEC=`.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000) + (ts.tv_nsec as u64) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(listener: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        listener.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let n = listener.recv(&mut buf).expect("a datagram arrives");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn path_socket_receives_each_message_as_one_datagram() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let mut n = Notifier::new(path.to_str(), None, None);
        n.notify("READY=1\nSTATUS=scanned");
        n.status("two\nlines");
        assert_eq!(recv(&listener), "READY=1\nSTATUS=scanned");
        assert_eq!(recv(&listener), "STATUS=two lines");
        assert_eq!(n.watchdog(), None);
    }

    #[test]
    fn abstract_socket_is_reached_by_at_name() {
        let name = format!("ovlaudit-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let mut n = Notifier::new(Some(&format!("@{name}")), None, None);
        n.notify("WATCHDOG=1");
        assert_eq!(recv(&listener), "WATCHDOG=1");
    }

    #[test]
    fn watchdog_is_ours_only_when_the_pid_matches() {
        let me = std::process::id().to_string();
        assert_eq!(Notifier::new(None, Some("3000000"), None).watchdog(), Some(Duration::from_secs(3)));
        assert_eq!(Notifier::new(None, Some("3000000"), Some(&me)).watchdog(), Some(Duration::from_secs(3)));
        assert_eq!(Notifier::new(None, Some("3000000"), Some("1")).watchdog(), None);
        assert_eq!(Notifier::new(None, Some("0"), None).watchdog(), None);
        assert_eq!(Notifier::new(None, Some("soon"), None).watchdog(), None);
    }

    #[test]
    fn a_full_socket_drops_messages_instead_of_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        // Bound and never read: its queue fills after a few hundred datagrams.
        let _listener = UnixDatagram::bind(&path).expect("bind");
        let mut n = Notifier::new(path.to_str(), None, None);
        let started = std::time::Instant::now();
        for _ in 0..5000 {
            n.notify("WATCHDOG=1");
        }
        assert!(started.elapsed() < Duration::from_secs(2), "sending blocked: {:?}", started.elapsed());
        assert!(n.dropped > 0, "the queue never filled");
        assert!(n.dropped < 5000, "nothing was delivered");
    }

    #[test]
    fn no_socket_means_silence() {
        let mut n = Notifier::new(None, None, None);
        n.notify("READY=1");
        let mut bad = Notifier::new(Some("relative/path"), None, None);
        bad.notify("READY=1");
        assert!(bad.socket.is_none());
    }
}
