//! `enable_syslog` (`-syslog`): the agent's log lines also go to the local
//! syslog daemon, as Consul's go-syslog sink sends them.
//!
//! - The daemon is reached on its Unix socket, the first of `/dev/log`,
//!   `/var/run/syslog` and `/var/run/log` that takes a datagram connection,
//!   else the first that takes a stream one (Go's `log/syslog` with no
//!   network). None at start stops the agent, as Consul's setup fails (it
//!   retries for a minute first; an agent under a supervisor is restarted
//!   anyway).
//! - Each line is one message in the form Go writes to a local daemon,
//!   `<PRI>Mmm dd hh:mm:ss consul[PID]: module: message`, in text whatever
//!   `log_json` says, the time in UTC (Go writes local time; daemons
//!   generally stamp messages themselves).
//!   The priority is `syslog_facility` (`LOCAL0` by default) with the
//!   severity Consul's `SyslogWrapper` gives each level: TRACE → debug,
//!   DEBUG → info, INFO → notice, WARN → warning, ERROR → err.
//! - A line the daemon does not take (its queue is full) is dropped: logging
//!   never blocks the agent. When the socket fails otherwise (the daemon
//!   restarted and made a new one), the agent reconnects, at most once a
//!   second, and sends the line again, as Go's `writeAndRetry` does.

use std::io::{self, Write as _};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use tribune_types::utc::UtcDateTime;

/// Where local syslog daemons listen, in the order Go tries them.
const SOCKETS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

/// go-syslog's facility names and codes.
const FACILITIES: [(&str, u8); 20] = [
    ("KERN", 0),
    ("USER", 1),
    ("MAIL", 2),
    ("DAEMON", 3),
    ("AUTH", 4),
    ("SYSLOG", 5),
    ("LPR", 6),
    ("NEWS", 7),
    ("UUCP", 8),
    ("CRON", 9),
    ("AUTHPRIV", 10),
    ("FTP", 11),
    ("LOCAL0", 16),
    ("LOCAL1", 17),
    ("LOCAL2", 18),
    ("LOCAL3", 19),
    ("LOCAL4", 20),
    ("LOCAL5", 21),
    ("LOCAL6", 22),
    ("LOCAL7", 23),
];

/// A connection to the local syslog daemon.
#[derive(Debug)]
pub struct Syslog {
    path: PathBuf,
    socket: Mutex<Socket>,
    facility: u8,
    pid: u32,
}

#[derive(Debug)]
enum Socket {
    Datagram(UnixDatagram),
    Stream(UnixStream),
    /// Lost; `since` is when the last reconnection was tried.
    Lost {
        since: Instant,
    },
}

impl Socket {
    fn open(path: &Path, stream: bool) -> io::Result<Socket> {
        if stream {
            let s = UnixStream::connect(path)?;
            s.set_nonblocking(true)?;
            Ok(Socket::Stream(s))
        } else {
            let s = UnixDatagram::unbound()?;
            s.connect(path)?;
            s.set_nonblocking(true)?;
            Ok(Socket::Datagram(s))
        }
    }

    fn send(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Socket::Datagram(s) => s.send(line).map(drop),
            Socket::Stream(s) => s.write_all(line),
            Socket::Lost { .. } => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Syslog {
    /// Connects to the local daemon for `facility` (a go-syslog name, any case).
    pub fn connect(facility: &str) -> io::Result<Syslog> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no syslog socket found");
        for stream in [false, true] {
            for path in SOCKETS {
                match Self::connect_with(Path::new(path), facility, stream) {
                    Ok(s) => return Ok(s),
                    Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Err(e),
                    Err(e) => last = e,
                }
            }
        }
        Err(io::Error::new(
            last.kind(),
            format!("Unix syslog delivery error: {last}"),
        ))
    }

    /// Connects to the daemon listening on `path` for datagrams.
    #[cfg(test)]
    fn connect_to(path: &Path, facility: &str) -> io::Result<Syslog> {
        Self::connect_with(path, facility, false)
    }

    fn connect_with(path: &Path, facility: &str, stream: bool) -> io::Result<Syslog> {
        let upper = facility.to_ascii_uppercase();
        let facility = FACILITIES
            .iter()
            .find(|(name, _)| *name == upper)
            .map(|(_, code)| *code)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid syslog facility {facility:?}"),
                )
            })?;
        let socket = Socket::open(path, stream)?;
        Ok(Syslog {
            path: path.to_path_buf(),
            socket: Mutex::new(socket),
            facility,
            pid: std::process::id(),
        })
    }

    /// Sends one line: `level` 0 (trace) to 4 (error), `text` what follows the
    /// level in Consul's text form (`module: message`).
    pub fn send(&self, level: u8, text: &str, now: SystemTime) {
        let line = self.datagram(level, text, now);
        let mut socket = self.socket.lock();
        match socket.send(line.as_bytes()) {
            Ok(()) => {}
            // The daemon is behind: this line is lost, the socket is fine.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                if let Socket::Lost { since } = *socket {
                    if since.elapsed() < Duration::from_secs(1) {
                        return;
                    }
                }
                let stream = matches!(*socket, Socket::Stream(_));
                *socket = Socket::open(&self.path, stream).unwrap_or(Socket::Lost {
                    since: Instant::now(),
                });
                let _ = socket.send(line.as_bytes());
            }
        }
    }

    fn datagram(&self, level: u8, text: &str, now: SystemTime) -> String {
        // debug, info, notice, warning, err
        let severity = match level {
            0 => 7,
            1 => 6,
            2 => 5,
            3 => 4,
            _ => 3,
        };
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let t = UtcDateTime::from_unix(secs);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS[usize::try_from(t.month - 1).unwrap_or(0).min(11)];
        // Go's `time.Stamp`: the day padded with a space.
        format!(
            "<{}>{month} {:>2} {:02}:{:02}:{:02} consul[{}]: {}\n",
            u16::from(self.facility) * 8 + severity,
            t.day,
            t.hour,
            t.minute,
            t.second,
            self.pid,
            text.trim_end(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_reach_the_daemon_in_gos_local_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let daemon = UnixDatagram::bind(&path).unwrap();
        let syslog = Syslog::connect_to(&path, "local3").unwrap();
        // 2023-11-05T07:08:09Z
        let at = UNIX_EPOCH + Duration::from_secs(1_699_168_089);
        let mut buf = [0u8; 512];
        for (level, pri) in [(0, 159), (1, 158), (2, 157), (3, 156), (4, 155)] {
            syslog.send(level, "agent: synced service: service=web", at);
            let n = daemon.recv(&mut buf).unwrap();
            let got = std::str::from_utf8(&buf[..n]).unwrap();
            assert_eq!(
                got,
                format!(
                    "<{pri}>Nov  5 07:08:09 consul[{}]: agent: synced service: service=web\n",
                    std::process::id()
                )
            );
        }
    }

    #[test]
    fn a_daemon_that_restarts_is_reached_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let daemon = UnixDatagram::bind(&path).unwrap();
        let syslog = Syslog::connect_to(&path, "LOCAL0").unwrap();
        // The daemon goes away and comes back on a new socket at the same path.
        drop(daemon);
        std::fs::remove_file(&path).unwrap();
        let daemon = UnixDatagram::bind(&path).unwrap();
        syslog.send(2, "agent: back", UNIX_EPOCH);
        let mut buf = [0u8; 256];
        let n = daemon.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .ends_with("agent: back\n"));
    }

    #[test]
    fn a_stream_socket_takes_the_same_lines() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let daemon = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let syslog = Syslog::connect_with(&path, "LOCAL0", true).unwrap();
        syslog.send(3, "agent: one", UNIX_EPOCH);
        syslog.send(4, "agent: two", UNIX_EPOCH);
        drop(syslog);
        let mut got = String::new();
        daemon.accept().unwrap().0.read_to_string(&mut got).unwrap();
        let pid = std::process::id();
        assert_eq!(
            got,
            format!(
                "<132>Jan  1 00:00:00 consul[{pid}]: agent: one\n<131>Jan  1 00:00:00 consul[{pid}]: agent: two\n"
            )
        );
    }

    #[test]
    fn unknown_facilities_and_absent_daemons_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = Syslog::connect_to(&dir.path().join("log"), "LOCAL9").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(Syslog::connect_to(&dir.path().join("none"), "LOCAL0").is_err());
    }
}
