//! `enable_syslog` (`-syslog`): the agent's log lines also go to the local
//! syslog daemon, as Consul's go-syslog sink sends them.
//!
//! - The daemon is reached on its Unix datagram socket, the first of
//!   `/dev/log`, `/var/run/syslog` and `/var/run/log` that takes a
//!   connection (Go's `log/syslog` with no network). None at start stops the
//!   agent, as Consul's setup fails (it retries for a minute first; an agent
//!   under a supervisor is restarted anyway).
//! - Each line is one datagram in the local form Go writes,
//!   `<PRI>Mmm dd hh:mm:ss consul[PID]: module: message`, the time in UTC.
//!   The priority is `syslog_facility` (`LOCAL0` by default) with the
//!   severity Consul's `SyslogWrapper` gives each level: TRACE → debug,
//!   DEBUG → info, INFO → notice, WARN → warning, ERROR → err.
//! - A datagram the daemon does not take (it restarted, its queue is full)
//!   is dropped: logging never blocks the agent.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

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
    socket: UnixDatagram,
    facility: u8,
    pid: u32,
}

impl Syslog {
    /// Connects to the local daemon for `facility` (a go-syslog name, any case).
    pub fn connect(facility: &str) -> io::Result<Syslog> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no syslog socket found");
        for path in SOCKETS {
            match Self::connect_to(Path::new(path), facility) {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(io::Error::new(
            last.kind(),
            format!("Unix syslog delivery error: {last}"),
        ))
    }

    /// Connects to the daemon listening on `path`.
    pub fn connect_to(path: &Path, facility: &str) -> io::Result<Syslog> {
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
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        socket.set_nonblocking(true)?;
        Ok(Syslog {
            socket,
            facility,
            pid: std::process::id(),
        })
    }

    /// Sends one line: `level` 0 (trace) to 4 (error), `text` what follows the
    /// level in Consul's text form (`module: message`).
    pub fn send(&self, level: u8, text: &str, now: SystemTime) {
        let _ = self.socket.send(self.datagram(level, text, now).as_bytes());
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
    fn unknown_facilities_and_absent_daemons_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = Syslog::connect_to(&dir.path().join("log"), "LOCAL9").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(Syslog::connect_to(&dir.path().join("none"), "LOCAL0").is_err());
    }
}
