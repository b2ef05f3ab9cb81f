//! Script checks, as Consul's `CheckMonitor` with `args`: the program runs directly
//! (no shell), stdout and stderr go into one ring buffer of `output_max_size` bytes,
//! and the exit code decides: 0 passing, 1 warning, anything else (or a signal)
//! critical. Past the timeout (default 30 s) the process group is killed and the
//! result is critical: `Timed out (<timeout>) running check`, then a blank line and
//! whatever output was captured.
//!
//! Each run gets its own process group so the kill reaches the script's children
//! too (Consul's `exec.KillCommandSubtree` sends SIGKILL to `-pid`); the direct
//! child is killed through tokio as well. A run cancelled while the script runs
//! (check removed or replaced, runner shut down) kills the group the same way, so
//! nothing left in the script's process group outlives its check. Consul leaves a
//! running script alone on deregistration; a script nobody will read the result
//! of is only load. The group is signalled only while the script is unreaped:
//! until then its pid, which is the group's id, cannot belong to anyone else.

use crate::output::TailBuffer;
use crate::process::{combined_output, GroupKill};
use crate::status::Probe;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tribune_types::format_go_duration;

pub(crate) async fn probe(args: &[String], timeout: Duration, output_max_size: usize) -> Probe {
    let Some((program, rest)) = args.split_first() else {
        return Probe::critical("script check has no arguments");
    };
    let mut command = Command::new(program);
    command.args(rest).stdin(Stdio::null()).kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let output_pipe = match combined_output(&mut command) {
        Ok(r) => r,
        Err(e) => return Probe::critical(format!("cannot capture the output of {program:?}: {e}")),
    };
    let spawned = command.spawn();
    // The command still holds the pipe's write end; closing ours lets the read see
    // end-of-file once the script (and anything it started) is done writing.
    drop(command);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Probe::critical(format!("exec: {program:?}: {e}")),
    };
    let mut group = GroupKill::of(&child);
    let buffer = Mutex::new(TailBuffer::new(output_max_size));
    // Like Go's `cmd.Wait`, a normal run ends when the process has exited *and* the
    // pipe is closed, so output written just before exit is never lost.
    let completed = {
        let work = async {
            let wait = async {
                let status = child.wait().await;
                // Reaped (or beyond waiting for): its pid may be reused from now
                // on, so the group id is no longer ours to signal.
                group.disarm();
                status
            };
            let (status, ()) = tokio::join!(wait, pump(output_pipe, &buffer));
            status
        };
        tokio::time::timeout(timeout, work).await
    };
    let output = |b: &Mutex<TailBuffer>| {
        b.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .script_output()
    };
    match completed {
        // Finished on its own: anything it left running is its business, as in
        // Consul (the guard was disarmed when the script was reaped).
        Ok(Ok(status)) => judge(status, output(&buffer)),
        Ok(Err(e)) => Probe::critical(format!("failed waiting for {program:?}: {e}")),
        Err(_) => {
            kill_tree(&mut child, &mut group).await;
            let mut msg = format!("Timed out ({}) running check", format_go_duration(timeout));
            // Whatever arrived before the kill; the pipe is not waited on again,
            // because a grandchild that escaped the group could hold it open.
            let captured = output(&buffer);
            if !captured.is_empty() {
                msg.push_str("\n\n");
                msg.push_str(&captured);
            }
            Probe::critical(msg)
        }
    }
}

fn judge(status: ExitStatus, output: String) -> Probe {
    match status.code() {
        Some(0) => Probe::passing(output),
        Some(1) => Probe::warning(output),
        _ => Probe::critical(output),
    }
}

async fn pump<R: AsyncRead + Unpin>(mut reader: R, buffer: &Mutex<TailBuffer>) {
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .write(&chunk[..n]),
        }
    }
}

/// SIGKILL to the run's process group, then to the child itself, and reap it so no
/// zombie is left and the next run never overlaps this one.
async fn kill_tree(child: &mut Child, group: &mut GroupKill) {
    group.kill();
    if let Err(e) = child.start_kill() {
        // Already exited (the group kill got it) is the common case here.
        tracing::debug!(error = %e, "check process already gone at kill");
    }
    let _ = child.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn exit_codes() {
        let t = Duration::from_secs(10);
        assert_eq!(probe(&sh("echo ok"), t, 4096).await, Probe::passing("ok\n"));
        assert_eq!(
            probe(&sh("echo slow >&2; exit 1"), t, 4096).await,
            Probe::warning("slow\n")
        );
        assert_eq!(probe(&sh("exit 2"), t, 4096).await, Probe::critical(""));
        assert_eq!(probe(&sh("kill -9 $$"), t, 4096).await, Probe::critical(""));
    }

    #[tokio::test]
    async fn missing_program_is_critical() {
        let p = probe(
            &["/nonexistent/tribune-check".to_owned()],
            Duration::from_secs(1),
            4096,
        )
        .await;
        assert_eq!(p.status, tribune_types::HealthStatus::Critical);
        assert!(
            p.output
                .starts_with("exec: \"/nonexistent/tribune-check\": "),
            "{}",
            p.output
        );
        assert_eq!(
            probe(&[], Duration::from_secs(1), 4096).await.status,
            tribune_types::HealthStatus::Critical
        );
    }

    #[tokio::test]
    async fn timeout_kills_and_reports_what_was_captured() {
        let p = tokio::time::timeout(
            Duration::from_secs(10),
            probe(
                &sh("echo started; sleep 30 & wait"),
                Duration::from_millis(300),
                4096,
            ),
        )
        .await
        .expect("probe returns soon after its timeout");
        assert_eq!(
            p,
            Probe::critical("Timed out (300ms) running check\n\nstarted\n")
        );
    }

    /// Whether `pid` is gone or a zombie (killed, not yet reaped by its new parent).
    #[cfg(target_os = "linux")]
    fn dead(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_cancelled_run_kills_the_scripts_children_too() {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use rustix::process::{pidfd_open, Pid, PidfdFlags};
        let limit = Duration::from_secs(10);
        let dir = tempfile::tempdir().expect("tempdir");
        // The script hands its child's pid through a FIFO: opening it blocks
        // until the script writes, so the test waits on that event, not a clock.
        let fifo = dir.path().join("grandchild");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let script = format!("sleep 60 & echo $! > '{}'; wait", fifo.display());
        let run =
            tokio::spawn(async move { probe(&sh(&script), Duration::from_secs(60), 4096).await });
        let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo));
        let pid = tokio::time::timeout(limit, read)
            .await
            .expect("the script started its child within 10 s")
            .expect("reader")
            .expect("pid from the FIFO");
        let pid = pid.trim().to_owned();
        // A pidfd becomes readable when the process exits: the event to await.
        let raw = Pid::from_raw(pid.parse().expect("pid")).expect("nonzero pid");
        let pidfd = pidfd_open(raw, PidfdFlags::empty()).expect("pidfd");
        assert!(!dead(&pid), "the grandchild runs while the check does");
        run.abort();
        assert!(run.await.expect_err("aborted").is_cancelled());
        let exited = tokio::task::spawn_blocking(move || {
            let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
            let timeout = Timespec {
                tv_sec: 10,
                tv_nsec: 0,
            };
            poll(&mut fds, Some(&timeout)).expect("poll")
        })
        .await
        .expect("poller");
        assert_eq!(exited, 1, "the grandchild was not killed within 10 s");
        assert!(dead(&pid));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_finished_run_leaves_what_it_started_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("daemon");
        // The background child keeps no copy of the output pipe, so the run ends
        // as soon as the script exits.
        let script = format!(
            "sleep 60 >/dev/null 2>&1 & echo $! > '{}'",
            pidfile.display()
        );
        let p = probe(&sh(&script), Duration::from_secs(10), 4096).await;
        assert_eq!(p, Probe::passing(""));
        let pid = std::fs::read_to_string(&pidfile).expect("pid file");
        let pid = pid.trim();
        assert!(!dead(pid), "a normal exit does not kill the group");
        // Clean up after ourselves.
        let pid = rustix::process::Pid::from_raw(pid.parse().expect("pid")).expect("nonzero");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}
