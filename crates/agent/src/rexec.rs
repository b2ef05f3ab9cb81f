//! Remote execution: the agent's side of `consul exec`.
//!
//! `consul exec` writes a job under `<prefix>/<session>/job` in the KV store
//! (locked by its session) and fires a `_rexec` user event carrying
//! `{"Prefix", "Session"}`. Every agent the event's filters select, unless
//! `disable_remote_exec` is set (Consul's default), runs the job as Consul's
//! `handleRemoteExec` does, writing under `<prefix>/<session>/<node>/`, each key
//! acquired with the job's session so that nothing is written once the command
//! has destroyed it:
//!
//! 1. `ack` (empty) when the job spec has been read;
//! 2. `out/<n>` (`n` in five hex digits, counting from 0): the command's stdout
//!    and stderr together, in chunks of at most [`CHUNK`] bytes, a chunk sent
//!    when full or after [`IDLE_FLUSH`] without output; an empty `out/<n>` is a
//!    heartbeat, sent when nothing was sent for the job's `Wait`;
//! 3. `exit`: the exit code in decimal (255 when the command could not start
//!    or its output could not be stored; -1 when a signal ended it).
//!
//! The job is `Command` (run with `$SHELL -c`, `/bin/sh` without one), `Args`
//! (run directly), or `Script` (written to a temporary file, mode 0750, which
//! the shell runs). `Wait` is a Go `time.Duration` in nanoseconds.
//!
//! The job runs in a task of its own, in a process group of its own; the group
//! is killed if the agent stops or the output can no longer be stored (the
//! command destroyed the session), as long as the job's first process has not
//! exited (after that its id, the group's, may be reused).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;
use tribune_health::process::{combined_output, GroupKill};
use tribune_rpc::ServerApi;
use tribune_types::model::ops::{
    Consistency, KvSetMode, QueryOptions, ReadRequest, ReadResult, WriteOutcome, WriteRequest,
};
use tribune_types::model::KvEntry;
use tribune_types::SessionId;

/// The user event name `consul exec` fires, and its default KV prefix.
pub const EVENT_NAME: &str = "_rexec";
/// The job's key under `<prefix>/<session>` ([`job_dir`]).
pub const JOB_KEY: &str = "job";
/// Under `<prefix>/<session>/<node>`: the ack, the exit code, and the
/// directory of output chunks.
pub const ACK_KEY: &str = "ack";
/// See [`ACK_KEY`].
pub const EXIT_KEY: &str = "exit";
/// See [`ACK_KEY`].
pub const OUTPUT_DIR: &str = "out";
/// Largest output chunk stored in one key.
pub(crate) const CHUNK: usize = 4 * 1024;
/// How long output may sit in a partial chunk.
pub(crate) const IDLE_FLUSH: Duration = Duration::from_millis(500);
/// The shortest heartbeat period: a job whose `Wait` is 0 would otherwise
/// write heartbeats in a busy loop (Consul's does).
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// The `_rexec` event's payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct JobRef {
    #[serde(default)]
    prefix: String,
    session: SessionId,
}

/// The job spec `consul exec` stores, encoded as Go's `json.Marshal` does
/// (empty fields left out).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Spec {
    /// Run with the shell.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// Run directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// A script for the shell; base64, as Go encodes a `[]byte`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// The heartbeat period: a Go `time.Duration`, i64 nanoseconds.
    pub wait: i64,
}

/// Why a job was not run (it is logged; nothing is written back).
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    #[error("failed to decode remote exec event: {0}")]
    BadEvent(serde_json::Error),
    #[error("failed to get remote exec job: {0}")]
    Read(String),
    #[error("remote exec aborted, job spec missing")]
    Missing,
    #[error("failed to decode remote exec spec: {0}")]
    BadSpec(String),
    #[error("failed to ack remote exec job: {0}")]
    Ack(String),
}

/// The KV reads and writes a job needs.
#[async_trait]
pub(crate) trait JobStore: Send + Sync {
    /// A key's value, `None` when absent.
    async fn get(&self, key: &str, consistency: Consistency) -> Result<Option<Vec<u8>>, String>;
    /// Writes `key` acquiring it for `session`; `false` when the lock could
    /// not be taken (the session is gone).
    async fn acquire(&self, key: &str, value: Vec<u8>, session: SessionId) -> Result<bool, String>;
}

#[async_trait]
impl JobStore for std::sync::Arc<dyn ServerApi> {
    async fn get(&self, key: &str, consistency: Consistency) -> Result<Option<Vec<u8>>, String> {
        let opts = QueryOptions {
            consistency,
            ..QueryOptions::default()
        };
        let req = ReadRequest::KvGet {
            key: key.to_owned(),
        };
        match self.read(req, opts).await {
            Ok((ReadResult::Kv(entries), _)) => Ok(entries.into_iter().next().map(|e| e.value)),
            Ok((other, _)) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn acquire(&self, key: &str, value: Vec<u8>, session: SessionId) -> Result<bool, String> {
        let req = WriteRequest::KvSet {
            entry: KvEntry {
                key: key.to_owned(),
                value,
                ..KvEntry::default()
            },
            mode: KvSetMode::Acquire(session),
        };
        match self.write(req).await {
            Ok((WriteOutcome::Done, _)) => Ok(true),
            Ok((WriteOutcome::NotApplied, _)) => Ok(false),
            Ok((other, _)) => Err(format!("unexpected outcome {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Where the job of `session` lives: `<prefix>/<session>`, joined as Go's
/// `path.Join` joins.
pub fn job_dir(prefix: &str, session: &str) -> String {
    join(&[prefix, session])
}

/// Go's `path.Join` for the keys here: empty and `.` segments dropped, one `/`
/// between segments.
fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split('/'))
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Runs the job a `_rexec` event names, on node `node`, to its end, with
/// Consul's shell: `$SHELL`, else `/bin/sh`.
pub(crate) async fn run<S: JobStore>(
    store: &S,
    node: &str,
    payload: &[u8],
) -> Result<(), JobError> {
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".to_owned());
    run_with(store, node, payload, &shell).await
}

/// [`run`] with `shell` for `Command` and `Script` jobs. Errors before the ack
/// mean nothing ran; later failures end in an `exit` key.
async fn run_with<S: JobStore>(
    store: &S,
    node: &str,
    payload: &[u8],
    shell: &str,
) -> Result<(), JobError> {
    let job: JobRef = serde_json::from_slice(payload).map_err(JobError::BadEvent)?;
    let job_key = join(&[&job.prefix, &job.session.to_string(), JOB_KEY]);
    // A stale read first, as Consul does ("for scale"): the command waited for
    // replication before firing the event. If that missed it, ask the leader.
    let spec = match store.get(&job_key, Consistency::Stale).await {
        Ok(Some(v)) => v,
        Ok(None) => store
            .get(&job_key, Consistency::Default)
            .await
            .map_err(JobError::Read)?
            .ok_or(JobError::Missing)?,
        Err(e) => return Err(JobError::Read(e)),
    };
    let spec: Spec = serde_json::from_slice(&spec).map_err(|e| JobError::BadSpec(e.to_string()))?;
    let out = Output {
        store,
        base: join(&[&job.prefix, &job.session.to_string(), node]),
        session: job.session,
    };
    match out.write(ACK_KEY, Vec::new()).await {
        Ok(true) => {}
        Ok(false) => return Err(JobError::Ack("write failed".into())),
        Err(e) => return Err(JobError::Ack(e)),
    }
    let code = execute(&spec, &out, shell).await;
    if let Err(e) = out.write(EXIT_KEY, code.to_string().into_bytes()).await {
        tracing::error!(error = %e, "failed to write exit code for remote exec job");
    }
    Ok(())
}

/// Where a job's results go.
struct Output<'a, S> {
    store: &'a S,
    /// `<prefix>/<session>/<node>`.
    base: String,
    session: SessionId,
}

impl<S: JobStore> Output<'_, S> {
    async fn write(&self, suffix: &str, value: Vec<u8>) -> Result<bool, String> {
        let key = format!("{}/{suffix}", self.base);
        self.store.acquire(&key, value, self.session).await
    }

    /// `out/<n>`; `false` when it could not be stored.
    async fn chunk(&self, n: u32, value: Vec<u8>) -> bool {
        match self.write(&format!("{OUTPUT_DIR}/{n:05x}"), value).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::error!("failed to write output for remote exec job: write failed");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "failed to write output for remote exec job");
                false
            }
        }
    }
}

/// Runs the command, uploading its output; returns the exit code to report.
///
/// Like Go's `cmd.Wait` in Consul's, the run ends when the process has exited
/// *and* its output pipe is closed; heartbeats go on until then. Output is sent
/// when a chunk is full, when it has been idle for [`IDLE_FLUSH`], or when a
/// heartbeat is due (so a command that prints a little at a time still shows
/// signs of life). If output can no longer be stored, or the run is dropped (the
/// agent stops), the command's whole process group is killed.
async fn execute<S: JobStore>(spec: &Spec, out: &Output<'_, S>, shell: &str) -> i32 {
    let script_file = match spec.script.as_deref().filter(|s| !s.is_empty()) {
        Some(b64) => match write_script(b64) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::debug!(error = %e, "failed to make tmp file for remote exec");
                return 255;
            }
        },
        None => None,
    };
    let mut cmd = match spec.args.as_deref() {
        Some([program, rest @ ..]) => {
            let mut c = tokio::process::Command::new(program);
            c.args(rest);
            c
        }
        _ => {
            let script = match &script_file {
                Some(f) => f.display().to_string(),
                None => spec.command.clone(),
            };
            let mut c = tokio::process::Command::new(shell);
            c.arg("-c").arg(script);
            c
        }
    };
    tracing::info!(command = ?cmd.as_std(), "remote exec");
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    cmd.process_group(0);
    let pipe = match combined_output(&mut cmd) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "failed to capture remote exec output");
            return 255;
        }
    };
    let spawned = cmd.spawn();
    // The command holds the pipe's write end; dropping it lets the read see
    // end-of-file once the job (and whatever it started) stops writing.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "failed to start remote exec");
            return 255;
        }
    };
    let mut group = GroupKill::of(&child);
    let heartbeat = Duration::from_nanos(u64::try_from(spec.wait).unwrap_or(0)).max(MIN_HEARTBEAT);
    let exited = async {
        let status = child.wait().await;
        // Reaped: its pid, the group's id, may be reused from now on.
        group.disarm();
        status
    };
    // `group` kills the job if this is dropped (or fails) before it exited.
    pump(out, pipe, exited, heartbeat).await
}

/// Uploads what the job writes to `pipe` until the job has `exited` and the
/// pipe is closed (see [`execute`]); returns the exit code to report. Apart
/// from the process, so its timing can be tested on paused time.
async fn pump<S, R, E>(out: &Output<'_, S>, mut pipe: R, exited: E, heartbeat: Duration) -> i32
where
    S: JobStore,
    R: tokio::io::AsyncRead + Unpin,
    E: std::future::Future<Output = std::io::Result<std::process::ExitStatus>>,
{
    tokio::pin!(exited);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut pipe_open = true;
    let mut status = None;
    let mut n: u32 = 0;
    let mut last_sent = tokio::time::Instant::now();
    // Set while `buf` holds output: when it goes out if nothing more comes.
    let mut flush_at: Option<tokio::time::Instant> = None;
    let mut read = [0u8; 4096];
    while pipe_open || status.is_none() {
        let beat = last_sent + heartbeat;
        let deadline = flush_at.map_or(beat, |f| f.min(beat));
        tokio::select! {
            r = pipe.read(&mut read), if pipe_open => match r {
                Ok(0) | Err(_) => pipe_open = false,
                Ok(k) => {
                    let mut rest = &read[..k];
                    while !rest.is_empty() {
                        let take = rest.len().min(CHUNK - buf.len());
                        buf.extend_from_slice(&rest[..take]);
                        rest = &rest[take..];
                        if buf.len() == CHUNK {
                            if !out.chunk(n, std::mem::take(&mut buf)).await {
                                return 255;
                            }
                            n += 1;
                            last_sent = tokio::time::Instant::now();
                        }
                    }
                    // Go's writer restarts its idle timer on every write.
                    flush_at = (!buf.is_empty()).then(|| tokio::time::Instant::now() + IDLE_FLUSH);
                }
            },
            s = &mut exited, if status.is_none() => status = Some(s),
            () = tokio::time::sleep_until(deadline) => {
                // What is buffered, or an empty heartbeat.
                if !out.chunk(n, std::mem::take(&mut buf)).await {
                    return 255;
                }
                n += 1;
                last_sent = tokio::time::Instant::now();
                flush_at = None;
            }
        }
    }
    if !buf.is_empty() && !out.chunk(n, buf).await {
        return 255;
    }
    match status {
        Some(Ok(status)) => status.code().unwrap_or(-1),
        Some(Err(e)) => {
            tracing::debug!(error = %e, "waiting for remote exec failed");
            1
        }
        None => 1,
    }
}

/// The job's script in a temporary file the shell can run; removed on drop.
/// The file is closed before it is returned: Linux refuses to run a file
/// still open for writing ("Text file busy").
fn write_script(b64: &str) -> std::io::Result<tempfile::TempPath> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let script = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut file = tempfile::Builder::new().prefix("rexec").tempfile()?;
    file.write_all(&script)?;
    file.flush()?;
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o750))?;
    Ok(file.into_temp_path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::collections::BTreeMap;

    /// An in-memory KV that records writes in order.
    #[derive(Default)]
    struct Fake {
        kv: Mutex<BTreeMap<String, Vec<u8>>>,
        writes: Mutex<Vec<(String, Vec<u8>)>>,
        /// Reads answered as absent on a stale read (a follower behind).
        stale_misses: bool,
        /// Writes fail from this many on.
        fail_after: Option<usize>,
    }

    #[async_trait]
    impl JobStore for Fake {
        async fn get(&self, key: &str, c: Consistency) -> Result<Option<Vec<u8>>, String> {
            if self.stale_misses && c == Consistency::Stale {
                return Ok(None);
            }
            Ok(self.kv.lock().get(key).cloned())
        }

        async fn acquire(&self, key: &str, value: Vec<u8>, _: SessionId) -> Result<bool, String> {
            let mut writes = self.writes.lock();
            if self.fail_after.is_some_and(|n| writes.len() >= n) {
                return Ok(false);
            }
            writes.push((key.to_owned(), value.clone()));
            self.kv.lock().insert(key.to_owned(), value);
            Ok(true)
        }
    }

    const SESSION: &str = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";

    fn job(fake: &Fake, spec: serde_json::Value) -> Vec<u8> {
        fake.kv.lock().insert(
            format!("_rexec/{SESSION}/job"),
            serde_json::to_vec(&spec).unwrap(),
        );
        serde_json::to_vec(&serde_json::json!({"Prefix": "_rexec", "Session": SESSION})).unwrap()
    }

    fn written(fake: &Fake) -> Vec<(String, String)> {
        let base = format!("_rexec/{SESSION}/n1/");
        fake.writes
            .lock()
            .iter()
            .map(|(k, v)| {
                (
                    k.strip_prefix(&base).unwrap_or(k).to_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_shell_command_acks_streams_its_output_and_exits() {
        let fake = Fake {
            stale_misses: true,
            ..Fake::default()
        };
        let payload = job(
            &fake,
            serde_json::json!({"Command": "echo hello; echo oops >&2; exit 3", "Wait": 2_000_000_000u64}),
        );
        run_with(&fake, "n1", &payload, "/bin/sh").await.unwrap();
        let w = written(&fake);
        assert_eq!(w.first().map(|(k, _)| k.as_str()), Some("ack"));
        assert_eq!(w.last().cloned(), Some(("exit".into(), "3".into())));
        let output: String = w
            .iter()
            .filter(|(k, _)| k.starts_with("out/"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert!(
            output.contains("hello\n") && output.contains("oops\n"),
            "{output:?}"
        );
        // Chunks are numbered from 0 in five hex digits.
        assert_eq!(w[1].0, "out/00000");
    }

    #[tokio::test]
    async fn args_run_without_a_shell_and_large_output_is_chunked() {
        let fake = Fake::default();
        let payload = job(
            &fake,
            serde_json::json!({"Args": ["head", "-c", "10000", "/dev/zero"], "Wait": 2_000_000_000u64}),
        );
        run_with(&fake, "n1", &payload, "/bin/sh").await.unwrap();
        let w = written(&fake);
        let chunks: Vec<usize> = w
            .iter()
            .filter(|(k, _)| k.starts_with("out/"))
            .map(|(_, v)| v.len())
            .collect();
        assert_eq!(chunks.iter().sum::<usize>(), 10_000);
        assert!(chunks.iter().all(|&c| c <= CHUNK), "{chunks:?}");
        assert_eq!(chunks[0], CHUNK);
        let names: Vec<&str> = w.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["ack", "out/00000", "out/00001", "out/00002", "exit"]
        );
        assert_eq!(w.last().unwrap().1, "0");
    }

    #[tokio::test]
    async fn a_script_runs_from_a_file_and_a_bad_program_reports_255() {
        let fake = Fake::default();
        let script =
            base64::engine::general_purpose::STANDARD.encode("#!/bin/sh\necho from-script\n");
        let payload = job(
            &fake,
            serde_json::json!({"Script": script, "Wait": 1_000_000_000u64}),
        );
        run_with(&fake, "n1", &payload, "/bin/sh").await.unwrap();
        let w = written(&fake);
        assert!(w.iter().any(|(_, v)| v == "from-script\n"), "{w:?}");
        assert_eq!(w.last().unwrap(), &("exit".to_owned(), "0".to_owned()));

        let fake = Fake::default();
        let payload = job(&fake, serde_json::json!({"Args": ["/nonexistent/program"]}));
        run_with(&fake, "n1", &payload, "/bin/sh").await.unwrap();
        assert_eq!(
            written(&fake),
            [
                ("ack".to_owned(), String::new()),
                ("exit".to_owned(), "255".to_owned())
            ]
        );
    }

    /// Runs [`pump`] on paused time against a job the test plays: `play`
    /// writes to the job's output and returns when the job exits (its output
    /// closed or not, as it chooses). Returns what was stored and the code.
    async fn pumped<F, Fut>(heartbeat: Duration, play: F) -> (Vec<(String, String)>, i32)
    where
        F: FnOnce(tokio::io::DuplexStream) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        use std::os::unix::process::ExitStatusExt as _;
        let fake = Fake::default();
        let out = Output {
            store: &fake,
            base: format!("_rexec/{SESSION}/n1"),
            session: SessionId(SESSION.parse().unwrap()),
        };
        let (job_side, our_side) = tokio::io::duplex(64 * 1024);
        let exited = async {
            play(job_side).await;
            Ok(std::process::ExitStatus::from_raw(0))
        };
        let code = pump(&out, our_side, exited, heartbeat).await;
        (written(&fake), code)
    }

    /// A dot every 200 ms: never idle for [`IDLE_FLUSH`], never a full chunk,
    /// so only the heartbeats (300 ms) send it.
    #[tokio::test(start_paused = true)]
    async fn output_that_trickles_in_goes_out_with_the_heartbeats() {
        use tokio::io::AsyncWriteExt as _;
        let (w, code) = pumped(Duration::from_millis(300), |mut job| async move {
            for _ in 0..6 {
                job.write_all(b".").await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert_eq!(code, 0);
        let with_output = w
            .iter()
            .filter(|(k, v)| k.starts_with("out/") && !v.is_empty())
            .count();
        // Heartbeats at 300, 600, 900 ms and the rest when the pipe closes.
        assert_eq!(with_output, 4, "{w:?}");
        let dots: String = w
            .iter()
            .filter(|(k, _)| k.starts_with("out/"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(dots, "......");
    }

    /// Silent for several heartbeat periods, with its output open and then with
    /// it closed: heartbeats go on until the job has exited.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_job_sends_heartbeats_until_it_exits() {
        for close_output_first in [false, true] {
            let (w, code) = pumped(Duration::from_millis(100), |job| async move {
                if close_output_first {
                    drop(job);
                    tokio::time::sleep(Duration::from_millis(550)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(550)).await;
                    drop(job);
                }
            })
            .await;
            assert_eq!(code, 0);
            assert_eq!(w.len(), 5, "one empty beat per 100 ms: {w:?}");
            assert!(w.iter().all(|(k, v)| k.starts_with("out/") && v.is_empty()));
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_job_whose_output_cannot_be_stored_is_killed_with_its_children() {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use rustix::process::{pidfd_open, Pid, PidfdFlags};
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // The ack is stored; the first output chunk is refused (the session is gone).
        let fake = Fake {
            fail_after: Some(1),
            ..Fake::default()
        };
        let command = format!(
            "sleep 30 & echo $! > {}; echo started; wait",
            pidfile.display()
        );
        let payload = job(
            &fake,
            serde_json::json!({"Command": command, "Wait": 2_000_000_000u64}),
        );
        run_with(&fake, "n1", &payload, "/bin/sh").await.unwrap();
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid = Pid::from_raw(pid.trim().parse().unwrap()).unwrap();
        // A SIGKILL is delivered asynchronously, so wait for the exit itself:
        // a pidfd becomes readable once the process has exited. One that is
        // already gone (reaped by whoever inherited it) cannot be opened.
        let pidfd = match pidfd_open(pid, PidfdFlags::empty()) {
            Err(rustix::io::Errno::SRCH) => return,
            other => other.unwrap(),
        };
        let exited = tokio::task::spawn_blocking(move || {
            let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
            let limit = Timespec {
                tv_sec: 10,
                tv_nsec: 0,
            };
            poll(&mut fds, Some(&limit)).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(exited, 1, "the background sleep survived for 10 s");
    }

    #[tokio::test]
    async fn nothing_runs_without_a_job_or_an_ack() {
        let fake = Fake::default();
        let payload =
            serde_json::to_vec(&serde_json::json!({"Prefix": "_rexec", "Session": SESSION}))
                .unwrap();
        assert!(matches!(
            run_with(&fake, "n1", &payload, "/bin/sh").await,
            Err(JobError::Missing)
        ));
        assert!(matches!(
            run_with(&fake, "n1", b"nope", "/bin/sh").await,
            Err(JobError::BadEvent(_))
        ));
        let fake = Fake {
            fail_after: Some(0),
            ..Fake::default()
        };
        let payload = job(
            &fake,
            serde_json::json!({"Command": "touch /should-not-run"}),
        );
        assert!(matches!(
            run_with(&fake, "n1", &payload, "/bin/sh").await,
            Err(JobError::Ack(_))
        ));
        assert!(fake.writes.lock().is_empty());
    }

    #[test]
    fn keys_are_joined_like_gos_path_join() {
        assert_eq!(join(&["_rexec/", "s", "n1"]), "_rexec/s/n1");
        assert_eq!(join(&["", "s", "job"]), "s/job");
        assert_eq!(join(&["a//b/", "./c"]), "a/b/c");
    }
}
