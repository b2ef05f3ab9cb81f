//! `log_file`: the agent's log, also written to files that rotate, as
//! Consul's `logging.LogFile` does it.
//!
//! - `log_file` is split into a directory and a file name; a path ending in
//!   `/` gets `consul.log`. Each file is named after it with the time it was
//!   opened inserted before the extension (`.log` when there is none):
//!   `/var/log/consul/` writes `/var/log/consul/consul-<unix nanos>.log`.
//! - Before each write, the file rotates when it has reached
//!   `log_rotate_bytes` (0: no limit) or was opened `log_rotate_duration` ago
//!   (24 h by default): it is closed, older files beyond
//!   `log_rotate_max_files` are removed (0 keeps them all, -1 keeps none),
//!   and a new one is opened.
//! - The first file is opened at start, so an unusable path stops the agent
//!   before anything else runs; later failures drop the line (a log cannot
//!   report its own failure anywhere but the console).
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
    dir: PathBuf,
    /// The name before the timestamp, and the extension after it (with its dot).
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
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                name,
            )
        };
        // Go's `filepath.Ext`: from the last dot of the name, when there is one.
        let (stem, ext) = match name.rfind('.') {
            Some(i) => (name[..i].to_owned(), name[i..].to_owned()),
            None => (name, ".log".to_owned()),
        };
        Naming { dir, stem, ext }
    }

    /// Creates the file opened at `at`.
    fn open(&self, at: SystemTime) -> io::Result<Open> {
        let nanos = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let path = self.dir.join(format!("{}-{nanos}{}", self.stem, self.ext));
        // Truncated: this agent is the only writer of a file named for this instant.
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o640)
            .open(path)?;
        Ok(Open {
            file,
            opened: at,
            written: 0,
        })
    }

    /// Whether `name` is one of these files.
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
        Ok(LogFile {
            naming,
            rotation,
            now,
            open: Mutex::new(first),
        })
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
        for name in &ours[..stale] {
            std::fs::remove_file(dir.join(name))?;
        }
        Ok(())
    }

    fn write_line(&self, buf: &[u8]) -> io::Result<usize> {
        let mut open = self.open.lock();
        let age = (self.now)().duration_since(open.opened).unwrap_or_default();
        let full = self.rotation.max_bytes > 0 && open.written >= self.rotation.max_bytes;
        if full || age >= self.rotation.duration {
            // The closed file counts among the ones pruning keeps.
            open.file.flush()?;
            self.prune()?;
            *open = self.naming.open((self.now)())?;
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
    fn files_are_named_as_consul_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let at = "1700000000000000000";
        for (path, want) in [
            (
                PathBuf::from(format!("{}/", d.display())),
                format!("consul-{at}.log"),
            ),
            (d.join("agent"), format!("agent-{at}.log")),
            (d.join("agent.txt"), format!("agent-{at}.txt")),
        ] {
            let (_, clock) = manual();
            let _log = LogFile::with_clock(&path, rotation(0, 0), clock).unwrap();
            assert!(names(d).contains(&want), "{path:?}: {:?}", names(d));
        }
        // A directory that does not exist stops the agent at start.
        assert!(LogFile::open(&d.join("nope/consul.log"), rotation(0, 0)).is_err());
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
        assert_eq!(names(dir.path()).len(), 1);
        (&log).write_all(b"next\n").unwrap();
        let files = names(dir.path());
        assert_eq!(files.len(), 2, "{files:?}");
        let read = |n: &String| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read(&files[0]), "123456\n789012\n");
        assert_eq!(read(&files[1]), "next\n");
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
    fn rotation_keeps_log_rotate_max_files_old_files() {
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
        let files = names(dir.path());
        // Two old files and the one being written, the newest ones, and
        // the two others.
        assert_eq!(files.len(), 5, "{files:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&files[2])).unwrap(),
            "4\n"
        );
        assert!(files.contains(&"other.log".to_owned()) && files.contains(&"c-old.log".to_owned()));

        let none = tempfile::tempdir().unwrap();
        let (secs, clock) = manual();
        let log = LogFile::with_clock(&none.path().join("c.log"), rotation(1, -1), clock).unwrap();
        for i in 0..3 {
            secs.fetch_add(1, Ordering::SeqCst);
            (&log).write_all(format!("{i}\n").as_bytes()).unwrap();
        }
        assert_eq!(
            names(none.path()).len(),
            1,
            "-1 keeps only the current file"
        );
    }
}
