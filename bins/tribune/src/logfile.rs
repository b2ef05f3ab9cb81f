//! `log_file`: the agent's log, also written to files that rotate, as
//! Consul's `logging.LogFile` does it.
//!
//! - `log_file` is split into a directory and a file name; a path ending in
//!   `/` gets `consul.log`. The agent appends to that file.
//! - Before each write, the file rotates when this agent has written
//!   `log_rotate_bytes` to it (0: no limit) or opened it
//!   `log_rotate_duration` ago (24 h by default): it is renamed with the time
//!   inserted before its extension (`.log` when it has none), so
//!   `consul.log` becomes `consul-<unix nanos>.log`; rotated files beyond
//!   `log_rotate_max_files` are removed, oldest first (0 keeps them all, -1
//!   none), and a new `consul.log` is opened.
//! - The file is opened at start, so an unusable path stops the agent before
//!   anything else runs. A rotation that cannot rename or prune still goes on
//!   writing to the file (the failure goes to standard error: a log cannot
//!   report its own trouble in itself).
//!
//! The clock is passed in, so rotation by age is tested with manual time.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Consul's rotation period when `log_rotate_duration` is not set.
pub const DEFAULT_ROTATE_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Where and when to rotate.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// `log_rotate_bytes` (0: no limit).
    pub max_bytes: u64,
    /// `log_rotate_duration` (zero: [`DEFAULT_ROTATE_DURATION`]).
    pub duration: Duration,
    /// `log_rotate_max_files` (0: keep all; negative: keep none).
    pub max_files: i64,
}

/// A rotating log file; `&LogFile` is the writer the log layer takes.
pub struct LogFile {
    naming: Naming,
    rotation: Rotation,
    now: Box<dyn Fn() -> SystemTime + Send + Sync>,
    open: Mutex<Open>,
}

/// The file being written.
struct Open {
    file: File,
    opened: SystemTime,
    written: u64,
}

/// Where the files go and what they are called.
struct Naming {
    /// `.` for a bare file name.
    dir: PathBuf,
    /// The file written to.
    name: String,
    /// Rotated files' names: the name's stem before the timestamp, and its
    /// extension (with the dot) after it.
    stem: String,
    ext: String,
}

impl Naming {
    /// The naming `log_file = path` asks for.
    fn of(path: &Path) -> Naming {
        let (dir, name) = if path.to_string_lossy().ends_with('/') {
            (path.to_path_buf(), "consul.log".to_owned())
        } else {
            let name = path.file_name().map_or_else(
                || "consul.log".to_owned(),
                |n| n.to_string_lossy().into_owned(),
            );
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (dir, name)
        };
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        // Go's `filepath.Ext`: from the last dot of the name, when there is one.
        let (stem, ext) = match name.rfind('.') {
            Some(i) => (name[..i].to_owned(), name[i..].to_owned()),
            None => (name.clone(), ".log".to_owned()),
        };
        Naming {
            dir,
            name,
            stem,
            ext,
        }
    }

    /// Opens the file for appending; `at` is when.
    fn open(&self, at: SystemTime) -> io::Result<Open> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(self.dir.join(&self.name))?;
        Ok(Open {
            file,
            opened: at,
            written: 0,
        })
    }

    /// Moves the file aside under its rotated name for `at`.
    fn rotate(&self, at: SystemTime) -> io::Result<()> {
        let nanos = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let rotated = format!("{}-{nanos}{}", self.stem, self.ext);
        std::fs::rename(self.dir.join(&self.name), self.dir.join(rotated))
    }

    /// Whether `name` is one of the rotated files.
    fn owns(&self, name: &str) -> bool {
        name.strip_prefix(&self.stem)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.strip_suffix(&self.ext))
            .is_some_and(|stamp| !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit()))
    }
}

impl LogFile {
    /// Opens the first file for `path` (see the module docs) with the system clock.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<LogFile> {
        Self::with_clock(path, rotation, Box::new(SystemTime::now))
    }

    /// [`LogFile::open`] with `now` as the clock.
    pub fn with_clock(
        path: &Path,
        mut rotation: Rotation,
        now: Box<dyn Fn() -> SystemTime + Send + Sync>,
    ) -> io::Result<LogFile> {
        if rotation.duration.is_zero() {
            rotation.duration = DEFAULT_ROTATE_DURATION;
        }
        let naming = Naming::of(path);
        let first = naming.open(now())?;
        let log = LogFile {
            naming,
            rotation,
            now,
            open: Mutex::new(first),
        };
        // As Consul's setup: a lower `log_rotate_max_files` applies at once.
        if let Err(e) = log.prune() {
            eprintln!("log_file: pruning {}: {e}", log.naming.name);
        }
        Ok(log)
    }

    /// Removes the oldest rotated files beyond `log_rotate_max_files`.
    fn prune(&self) -> io::Result<()> {
        let keep = self.rotation.max_files;
        if keep == 0 {
            return Ok(());
        }
        let dir = &self.naming.dir;
        let mut ours: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| self.naming.owns(n))
            .collect();
        // Nanosecond stamps of this era all have 19 digits: by name is by age.
        ours.sort();
        let stale = usize::try_from(keep).map_or(ours.len(), |k| ours.len().saturating_sub(k));
        // Every stale file is tried, as Consul's `removeFiles`; the first
        // failure is reported.
        let mut failed = Ok(());
        for name in &ours[..stale] {
            if let Err(e) = std::fs::remove_file(dir.join(name)) {
                failed = failed.and(Err(e));
            }
        }
        failed
    }

    fn write_line(&self, buf: &[u8]) -> io::Result<usize> {
        let mut open = self.open.lock();
        let age = (self.now)().duration_since(open.opened).unwrap_or_default();
        let full = self.rotation.max_bytes > 0 && open.written >= self.rotation.max_bytes;
        if full || age >= self.rotation.duration {
            let now = (self.now)();
            let moved = self.naming.rotate(now).and_then(|()| self.prune());
            if let Err(e) = moved {
                eprintln!("log_file: rotating {}: {e}", self.naming.name);
            }
            match self.naming.open(now) {
                Ok(new) => *open = new,
                // Written on to the old file rather than not at all; the next
                // attempt comes after another period.
                Err(e) => {
                    eprintln!("log_file: reopening {}: {e}", self.naming.name);
                    open.opened = now;
                    open.written = 0;
                }
            }
        }
        let n = open.file.write(buf)?;
        open.written += n as u64;
        Ok(n)
    }
}

impl Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_line(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.open.lock().file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A clock the test moves by hand (seconds since the epoch).
    fn manual() -> (Arc<AtomicU64>, Box<dyn Fn() -> SystemTime + Send + Sync>) {
        let secs = Arc::new(AtomicU64::new(1_700_000_000));
        let read = Arc::clone(&secs);
        let clock = Box::new(move || UNIX_EPOCH + Duration::from_secs(read.load(Ordering::SeqCst)));
        (secs, clock)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    fn rotation(max_bytes: u64, max_files: i64) -> Rotation {
        Rotation {
            max_bytes,
            duration: Duration::ZERO,
            max_files,
        }
    }

    #[test]
    fn the_file_is_named_as_consul_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (path, want) in [
            (PathBuf::from(format!("{}/", d.display())), "consul.log"),
            (d.join("agent"), "agent"),
            (d.join("agent.txt"), "agent.txt"),
        ] {
            let (_, clock) = manual();
            let log = LogFile::with_clock(&path, rotation(0, 0), clock).unwrap();
            (&log).write_all(b"x\n").unwrap();
            assert!(
                names(d).contains(&want.to_owned()),
                "{path:?}: {:?}",
                names(d)
            );
        }
        // Rotated names: the stem, the time, the extension (`.log` if none).
        let (secs, clock) = manual();
        let log = LogFile::with_clock(&d.join("agent"), rotation(1, 0), clock).unwrap();
        (&log).write_all(b"y\n").unwrap();
        secs.fetch_add(1, Ordering::SeqCst);
        (&log).write_all(b"w\n").unwrap();
        let rotated = "agent-1700000001000000000.log".to_owned();
        assert!(names(d).contains(&rotated), "{:?}", names(d));
        // Appended to, not truncated, across restarts.
        let (_, clock) = manual();
        let again = LogFile::with_clock(&d.join("agent.txt"), rotation(0, 0), clock).unwrap();
        (&again).write_all(b"z\n").unwrap();
        let text = std::fs::read_to_string(d.join("agent.txt")).unwrap();
        assert_eq!(text, "x\nz\n");
        // A directory that does not exist stops the agent at start.
        assert!(LogFile::open(&d.join("nope/consul.log"), rotation(0, 0)).is_err());
    }

    #[test]
    fn a_bare_file_name_is_in_the_working_directory() {
        let naming = Naming::of(Path::new("consul.log"));
        assert_eq!(naming.dir, PathBuf::from("."));
        assert!(naming.owns("consul-1700000000000000000.log"));
        assert!(!naming.owns("consul.log") && !naming.owns("consul-x.log"));
    }

    #[test]
    fn a_file_rotates_once_it_holds_log_rotate_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (secs, clock) = manual();
        let log = LogFile::with_clock(&dir.path().join("c.log"), rotation(10, 0), clock).unwrap();
        (&log).write_all(b"123456\n").unwrap();
        secs.fetch_add(1, Ordering::SeqCst);
        // Under the limit before this write: it goes to the same file.
        (&log).write_all(b"789012\n").unwrap();
        assert_eq!(names(dir.path()), ["c.log"]);
        (&log).write_all(b"next\n").unwrap();
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(names(dir.path()), ["c-1700000001000000000.log", "c.log"]);
        assert_eq!(read("c-1700000001000000000.log"), "123456\n789012\n");
        assert_eq!(read("c.log"), "next\n");
    }

    #[test]
    fn a_file_rotates_after_log_rotate_duration() {
        let dir = tempfile::tempdir().unwrap();
        let (secs, clock) = manual();
        let rot = Rotation {
            max_bytes: 0,
            duration: Duration::from_secs(60),
            max_files: 0,
        };
        let log = LogFile::with_clock(&dir.path().join("c.log"), rot, clock).unwrap();
        (&log).write_all(b"a\n").unwrap();
        secs.fetch_add(59, Ordering::SeqCst);
        (&log).write_all(b"b\n").unwrap();
        assert_eq!(names(dir.path()).len(), 1);
        secs.fetch_add(1, Ordering::SeqCst);
        (&log).write_all(b"c\n").unwrap();
        assert_eq!(names(dir.path()).len(), 2);
    }

    #[test]
    fn rotation_keeps_log_rotate_max_files_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        // Other files in the same directory are never touched.
        std::fs::write(dir.path().join("other.log"), "x").unwrap();
        std::fs::write(dir.path().join("c-old.log"), "x").unwrap();
        let (secs, clock) = manual();
        let log = LogFile::with_clock(&dir.path().join("c.log"), rotation(1, 2), clock).unwrap();
        for i in 0..5 {
            secs.fetch_add(1, Ordering::SeqCst);
            (&log).write_all(format!("{i}\n").as_bytes()).unwrap();
        }
        // The two newest rotated files, the current one and the two others.
        assert_eq!(
            names(dir.path()),
            [
                "c-1700000004000000000.log",
                "c-1700000005000000000.log",
                "c-old.log",
                "c.log",
                "other.log"
            ]
        );
        let current = std::fs::read_to_string(dir.path().join("c.log")).unwrap();
        assert_eq!(current, "4\n");

        let none = tempfile::tempdir().unwrap();
        let (secs, clock) = manual();
        let log = LogFile::with_clock(&none.path().join("c.log"), rotation(1, -1), clock).unwrap();
        for i in 0..3 {
            secs.fetch_add(1, Ordering::SeqCst);
            (&log).write_all(format!("{i}\n").as_bytes()).unwrap();
        }
        assert_eq!(names(none.path()), ["c.log"], "-1 keeps no rotated file");
    }

    #[test]
    fn a_rotation_that_fails_keeps_writing() {
        let dir = tempfile::tempdir().unwrap();
        let (secs, clock) = manual();
        let log = LogFile::with_clock(&dir.path().join("c.log"), rotation(1, 0), clock).unwrap();
        (&log).write_all(b"a\n").unwrap();
        // The file vanished (removed by hand): nothing to rename.
        std::fs::remove_file(dir.path().join("c.log")).unwrap();
        secs.fetch_add(1, Ordering::SeqCst);
        (&log).write_all(b"b\n").unwrap();
        let current = std::fs::read_to_string(dir.path().join("c.log")).unwrap();
        assert_eq!(current, "b\n");
    }
}
