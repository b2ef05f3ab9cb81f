//! Child processes the agent runs (script checks, `consul exec` jobs): their
//! stdout and stderr in one pipe, in the order they were written
//! ([`combined_output`]), and a kill of the whole process group ([`GroupKill`]),
//! so that what a shell started goes with it.

use std::process::Stdio;
use tokio::process::{Child, Command};

/// One pipe for both stdout and stderr, so the buffer sees writes in the order the
/// script made them (Go hands the same `circbuf` writer to both).
#[cfg(unix)]
pub fn combined_output(command: &mut Command) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    let (sender, receiver) = tokio::net::unix::pipe::pipe()?;
    let write = sender.into_blocking_fd()?;
    command
        .stderr(Stdio::from(write.try_clone()?))
        .stdout(Stdio::from(write));
    Ok(receiver)
}

/// The project runs on Unix; elsewhere a script check reports why it cannot run.
#[cfg(not(unix))]
pub fn combined_output(_: &mut Command) -> std::io::Result<tokio::io::Empty> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "script checks need a Unix host in this build",
    ))
}

/// SIGKILL to a run's process group, at most once: when the run times out, or when
/// it is dropped unfinished (cancelled), provided the script has not been reaped
/// yet. Reaping disarms it: an unreaped script (alive or a zombie) keeps its pid,
/// and with it the group id, reserved; after that the number may be reused.
pub struct GroupKill {
    #[cfg(unix)]
    group: Option<rustix::process::Pid>,
}

impl GroupKill {
    /// The group `child` leads (it was spawned with `process_group(0)`).
    pub fn of(child: &Child) -> Self {
        GroupKill {
            #[cfg(unix)]
            group: child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw),
        }
    }

    /// Kills the group now, unless already done or disarmed.
    pub fn kill(&mut self) {
        #[cfg(unix)]
        if let Some(group) = self.group.take() {
            // ESRCH (everyone already gone) is the common case after a normal
            // cancel; anything else is worth a line in the log.
            match rustix::process::kill_process_group(group, rustix::process::Signal::KILL) {
                Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                Err(e) => tracing::warn!(error = %e, "failed to kill a process group"),
            }
        }
    }

    /// Forgets the group: to be called once the leader has been reaped, when
    /// its id may be reused.
    pub fn disarm(&mut self) {
        #[cfg(unix)]
        {
            self.group = None;
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}
