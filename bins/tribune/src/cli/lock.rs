//! `lock`: run a child process while holding a lock (or, with `-n` > 1, one of N
//! semaphore slots) under a KV prefix, as `consul lock` does.
//!
//! The lock is [`tribune_client::Lock`] on `<prefix>/.lock` (the semaphore's key name,
//! so a lock and a semaphore on one prefix report a conflict instead of mixing), the
//! semaphore [`tribune_client::Semaphore`] on `<prefix>`; both interoperate with Go
//! `consul lock` processes on the same prefix. The child runs with
//! `CONSUL_LOCK_HELD=true`. When the lock is lost, or this process gets SIGINT or
//! SIGTERM, the child gets SIGTERM, then SIGKILL after 5 s; the lock is then released
//! and the key removed if unused. Messages and exit codes are Consul's (`command/lock`):
//! 0 once the child ran (whatever its exit code, unless `-child-exit-code`, which
//! makes a failed child exit 2), 1 when the lock could not be taken or released.

use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tribune_client::{
    path_join, AcquireOutcome, Client, DestroyOutcome, Lock, LockError, LockLost, LockOptions,
    Semaphore, SemaphoreOptions, DEFAULT_WAIT_TIME, SEMAPHORE_LOCK_KEY,
};
use tribune_types::duration::{parse_go_duration, DurationError};
use tribune_types::goflag::{FlagSet, Parsed};

use super::http::{client_flags, reachable_client, server_flags, tenancy_flags};
use super::{flag_error, number_flag, parse, Ctx};

/// Time a child gets between SIGTERM and SIGKILL (Consul's `lockKillGracePeriod`,
/// chosen against the default 15 s lock-delay: the child must be gone before the
/// next holder can get the lock).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Default of `-monitor-retry`: 500s tolerated before the lock counts as lost.
const DEFAULT_MONITOR_RETRY: u32 = 3;

/// Pause between monitor retries (Consul's `defaultMonitorRetryTime`; the library
/// default is 2 s, the command uses 1 s).
const MONITOR_RETRY_TIME: Duration = Duration::from_secs(1);

const HELP: &str = r#"Usage: tribune lock [options] prefix child...

  Acquires a lock or semaphore at a given path, and invokes a child process
  when successful. The child process can assume the lock is held while it
  executes. If the lock is lost or communication is disrupted the child
  process will be sent a SIGTERM signal and given time to gracefully exit.
  After the grace period expires the process will be hard terminated.

  When -n=1, only a single lock holder or leader exists providing mutual
  exclusion. Setting a higher value switches to a semaphore allowing multiple
  holders to coordinate.

  The prefix provided must have write privileges."#;

fn flags() -> FlagSet {
    let flags = FlagSet::new("lock")
        .bool(
            "child-exit-code",
            "Exit 2 if the child process exited with an error if this is true, otherwise \
             this doesn't propagate an error from the child. The default value is false.",
        )
        .value(
            "n",
            "Optional limit on the number of concurrent lock holders. The underlying \
             implementation switches from a lock to a semaphore when the value is greater \
             than 1. The default value is 1.",
        )
        .value(
            "monitor-retry",
            "Number of times to retry if Consul returns a 500 error while monitoring the \
             lock. This allows riding out brief periods of unavailability without causing \
             leader elections, but increases the amount of time required to detect a lost \
             lock in some cases. The default value is 3, with a 1s wait between retries. \
             Set this value to 0 to disable retires.",
        )
        .value(
            "name",
            "Optional name to associate with the lock session. It not provided, one is \
             generated based on the provided child command.",
        )
        .bool("pass-stdin", "Pass stdin to the child process.")
        .bool(
            "shell",
            "Use a shell to run the command (can set a custom shell via the SHELL \
             environment variable). The default value is true.",
        )
        .value(
            "timeout",
            "Maximum amount of time to wait to acquire the lock, specified as a duration \
             like \"1s\" or \"3h\". The default value is 0.",
        )
        .value("try", "DEPRECATED. Use -timeout instead.")
        .bool("verbose", "Enable verbose (debugging) output.");
    tenancy_flags(server_flags(client_flags(flags)))
}

/// A command line that cannot run: a flag that does not parse (printed with the help
/// text, like Go's `flag` package) or a usage error (printed alone).
#[derive(Debug, PartialEq, Eq)]
enum Invalid {
    Flag(String),
    Usage(&'static str),
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Settings {
    /// Holders allowed; 1 = a lock, more = a semaphore.
    limit: u32,
    /// The KV prefix, without a leading `/`.
    prefix: String,
    /// The child command line.
    child: Vec<String>,
    /// Session name.
    name: String,
    /// Give up acquiring after this long (`-timeout`); `None` = wait forever.
    timeout: Option<Duration>,
    monitor_retry: u32,
    shell: bool,
    pass_stdin: bool,
    child_exit_code: bool,
    verbose: bool,
}

/// Validates the parsed command line in the order `consul lock` does, so the same bad
/// line gets the same message.
fn settings(p: &Parsed) -> Result<Settings, Invalid> {
    let limit = number_flag::<i64>(p, "n")
        .map_err(Invalid::Flag)?
        .unwrap_or(1);
    let monitor_retry = number_flag::<i64>(p, "monitor-retry")
        .map_err(Invalid::Flag)?
        .unwrap_or(i64::from(DEFAULT_MONITOR_RETRY));
    // `-try` is the deprecated spelling of `-timeout`; both set one value, last one wins.
    let timeout_text = p
        .order
        .iter()
        .rev()
        .find(|(name, _)| name == "timeout" || name == "try")
        .map(|(name, value)| (name.as_str(), value.as_str()));
    // Go's flag parser accepts a negative duration; the command refuses it further down.
    let timeout = match timeout_text {
        None => Some(Duration::ZERO),
        Some((name, text)) => match parse_go_duration(text) {
            Ok(d) => Some(d),
            Err(DurationError::Negative(_)) => None,
            Err(_) => {
                return Err(Invalid::Flag(format!(
                    "invalid value {text:?} for flag -{name}: parse error"
                )))
            }
        },
    };
    if limit <= 0 {
        return Err(Invalid::Usage("Lock holder limit must be positive"));
    }
    let limit = u32::try_from(limit).map_err(|_| {
        Invalid::Flag(format!(
            "invalid value \"{limit}\" for flag -n: value out of range"
        ))
    })?;
    if p.args.len() < 2 {
        return Err(Invalid::Usage(
            "Key prefix and child command must be specified",
        ));
    }
    let prefix = p.args[0].strip_prefix('/').unwrap_or(&p.args[0]).to_owned();
    let Some(timeout) = timeout else {
        return Err(Invalid::Usage("Timeout must be positive"));
    };
    let child = p.args[1..].to_vec();
    let name = match p.get("name").filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        // Consul's generated name, kept verbatim: operators find sessions by it.
        None => format!("Consul lock for '{}' at '{}'", child.join(" "), prefix),
    };
    let monitor_retry = u32::try_from(monitor_retry)
        .map_err(|_| Invalid::Usage("Number for 'monitor-retry' must be >= 0"))?;
    Ok(Settings {
        limit,
        prefix,
        child,
        name,
        timeout: (!timeout.is_zero()).then_some(timeout),
        monitor_retry,
        shell: p.flag("shell").unwrap_or(true),
        pass_stdin: p.is_set("pass-stdin"),
        child_exit_code: p.is_set("child-exit-code"),
        verbose: p.is_set("verbose"),
    })
}

/// A signal this process forwards to the child and treats as a shutdown request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sig {
    Interrupt,
    Terminate,
}

impl Sig {
    /// The name `kill -s` takes.
    fn name(self) -> &'static str {
        match self {
            Sig::Interrupt => "INT",
            Sig::Terminate => "TERM",
        }
    }
}

/// `lock ...`, with SIGINT and SIGTERM of this process as shutdown requests.
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let (listener, mut signals) = match signals(ctx) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = run_with(args, ctx, &mut signals).await;
    listener.abort();
    code
}

/// SIGINT and SIGTERM as shutdown requests for a long-running command: the
/// listener task (abort it when done) and the requests; `Err` is the exit code,
/// after Consul's message, when the handlers cannot be installed.
pub(super) fn signals(
    ctx: &mut Ctx,
) -> Result<(tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<Sig>), i32> {
    let (tx, rx) = mpsc::unbounded_channel();
    match listen(tx) {
        Ok(task) => Ok((task, rx)),
        Err(err) => {
            ctx.error(&format!("Error setting up signal handlers: {err}"));
            Err(1)
        }
    }
}

/// Turns SIGINT and SIGTERM into messages for the command.
pub(super) fn listen(
    tx: mpsc::UnboundedSender<Sig>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                Some(()) = interrupt.recv() => Sig::Interrupt,
                Some(()) = terminate.recv() => Sig::Terminate,
                else => return,
            };
            if tx.send(sig).is_err() {
                return;
            }
        }
    }))
}

/// Resolves on the first shutdown request; never, if none can come any more.
pub(super) async fn shutdown(signals: &mut mpsc::UnboundedReceiver<Sig>) {
    if signals.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
}

/// The command, with shutdown requests arriving on `signals`.
pub(crate) async fn run_with(
    args: &[String],
    ctx: &mut Ctx,
    signals: &mut mpsc::UnboundedReceiver<Sig>,
) -> i32 {
    let flags = flags();
    let p = match parse(&flags, args, HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let s = match settings(&p) {
        Ok(s) => s,
        Err(Invalid::Flag(message)) => return flag_error(ctx, &flags, HELP, &message),
        Err(Invalid::Usage(message)) => {
            ctx.error(message);
            return 1;
        }
    };
    let client = match reachable_client(&p, ctx).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut holder = match Holder::new(client, &s, ctx) {
        Ok(h) => h,
        Err(err) => {
            ctx.error(&format!("Lock setup failed: {err}"));
            return 1;
        }
    };

    if s.verbose {
        ctx.info("Attempting lock acquisition");
    }
    let mut lost = match holder.acquire(shutdown(signals)).await {
        Ok(AcquireOutcome::Acquired(lost)) => lost,
        Ok(AcquireOutcome::Stopped | AcquireOutcome::TimedOut) => {
            ctx.error("Shutdown triggered or timeout during lock acquisition");
            return 1;
        }
        Err(err) => {
            ctx.error(&format!("Lock acquisition failed: {err}"));
            return 1;
        }
    };

    // A shutdown that raced the acquisition: give the lock back without running anything.
    let child_code = if signals.try_recv().is_ok() {
        ctx.error("Shutdown triggered during lock acquisition");
        0
    } else {
        supervise(&s, ctx, &mut lost, signals).await
    };

    if let Err(err) = holder.release().await {
        ctx.error(&format!("Lock release failed: {err}"));
        return 1;
    }
    match holder.destroy().await {
        Ok(DestroyOutcome::InUse) => {
            if s.verbose {
                ctx.info("Cleanup aborted, lock in use");
            }
        }
        Ok(DestroyOutcome::Destroyed | DestroyOutcome::Absent) => {
            if s.verbose {
                ctx.info("Cleanup succeeded");
            }
        }
        Err(err) => {
            ctx.error(&format!("Lock cleanup failed: {err}"));
            return 1;
        }
    }
    if s.child_exit_code {
        child_code
    } else {
        0
    }
}

/// A lock or a semaphore, whichever `-n` asks for.
enum Holder {
    Lock(Lock),
    Semaphore(Semaphore),
}

impl Holder {
    fn new(client: Client, s: &Settings, ctx: &mut Ctx) -> Result<Self, LockError> {
        let wait_time = s.timeout.unwrap_or(DEFAULT_WAIT_TIME);
        if s.limit == 1 {
            let key = path_join(&[&s.prefix, SEMAPHORE_LOCK_KEY]);
            if s.verbose {
                ctx.info(format!("Setting up lock at path: {key}"));
            }
            let opts = LockOptions {
                session_name: s.name.clone(),
                monitor_retries: s.monitor_retry,
                monitor_retry_time: MONITOR_RETRY_TIME,
                lock_try_once: s.timeout.is_some(),
                lock_wait_time: wait_time,
                ..LockOptions::new(key)
            };
            Lock::new(client, opts).map(Holder::Lock)
        } else {
            if s.verbose {
                ctx.info(format!(
                    "Setting up semaphore (limit {}) at prefix: {}",
                    s.limit, s.prefix
                ));
            }
            let opts = SemaphoreOptions {
                session_name: s.name.clone(),
                monitor_retries: s.monitor_retry,
                monitor_retry_time: MONITOR_RETRY_TIME,
                try_once: s.timeout.is_some(),
                wait_time,
                ..SemaphoreOptions::new(s.prefix.clone(), s.limit)
            };
            Semaphore::new(client, opts).map(Holder::Semaphore)
        }
    }

    async fn acquire(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<AcquireOutcome, LockError> {
        match self {
            Holder::Lock(l) => l.acquire(stop).await,
            Holder::Semaphore(s) => s.acquire(stop).await,
        }
    }

    async fn release(&mut self) -> Result<(), LockError> {
        match self {
            Holder::Lock(l) => l.release().await,
            Holder::Semaphore(s) => s.release().await,
        }
    }

    async fn destroy(&mut self) -> Result<DestroyOutcome, LockError> {
        match self {
            Holder::Lock(l) => l.destroy().await,
            Holder::Semaphore(s) => s.destroy().await,
        }
    }
}

/// Program and arguments for the child: `$SHELL -c "<args joined by spaces>"` (default
/// `/bin/sh`) with `-shell`, else the arguments as they are.
pub(super) fn command_line(
    shell: bool,
    shell_var: Option<&str>,
    child: &[String],
) -> (String, Vec<String>) {
    if shell {
        let program = shell_var.filter(|s| !s.is_empty()).unwrap_or("/bin/sh");
        (program.to_owned(), vec!["-c".to_owned(), child.join(" ")])
    } else {
        (child[0].clone(), child[1..].to_vec())
    }
}

/// Go's `ProcessState.String()` for how the child ended (`exit status 2`,
/// `signal: terminated`), which `consul lock` prints after "Error running handler: ".
pub(super) fn exit_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    let Some(sig) = status.signal() else {
        return status.to_string();
    };
    let name = match sig {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        5 => "trace/breakpoint trap",
        6 => "aborted",
        7 => "bus error",
        8 => "floating point exception",
        9 => "killed",
        10 => "user defined signal 1",
        11 => "segmentation fault",
        12 => "user defined signal 2",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        other => return format!("signal: signal {other}"),
    };
    format!("signal: {name}")
}

/// Starts the child with the lock held.
fn spawn_child(s: &Settings, ctx: &Ctx) -> std::io::Result<Child> {
    let shell_var = ctx.var("SHELL");
    let (program, args) = command_line(s.shell, shell_var.as_deref(), &s.child);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("CONSUL_LOCK_HELD", "true")
        .stdin(if s.pass_stdin {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        })
        // The child must never outlive our hold on the lock, even on an early return.
        .kill_on_drop(true);
    cmd.spawn()
}

/// Runs the child until it exits, the lock is lost, or a shutdown is requested.
/// Returns the child's part of the exit code: 2 if it failed on its own, else 0.
async fn supervise(
    s: &Settings,
    ctx: &mut Ctx,
    lost: &mut LockLost,
    signals: &mut mpsc::UnboundedReceiver<Sig>,
) -> i32 {
    if s.verbose {
        ctx.info("Starting handler");
        if s.pass_stdin {
            ctx.info("Stdin passed to handler process");
        }
    }
    let mut child = match spawn_child(s, ctx) {
        Ok(child) => child,
        Err(err) => {
            ctx.error(&format!("Error starting handler: {err}"));
            return 2;
        }
    };
    tokio::select! {
        status = child.wait() => {
            let code = report_exit(ctx, status);
            if s.verbose {
                ctx.info("Child terminated, releasing lock");
            }
            return code;
        }
        Some(sig) = signals.recv() => {
            // Consul forwards the signal to the child, then terminates it as below.
            if let Some(pid) = child.id() {
                if let Err(err) = signal_pid(pid, sig).await {
                    ctx.error(&format!(
                        "Warning, could not forward signal: failed to send signal {:?}: {err}",
                        sig.name()
                    ));
                }
            }
            if s.verbose {
                ctx.info("Shutdown triggered, killing child");
            }
        }
        () = lost.wait() => {
            if s.verbose {
                ctx.info("Lock lost, killing child");
            }
        }
    }
    kill_child(&mut child, s.verbose, ctx).await;
    0
}

/// Prints how a failed child ended (Consul's "Error running handler: ..."); returns 2
/// for a failure, 0 for success.
fn report_exit(ctx: &mut Ctx, status: std::io::Result<ExitStatus>) -> i32 {
    match status {
        Ok(status) if status.success() => 0,
        Ok(status) => {
            ctx.error(&format!("Error running handler: {}", exit_text(status)));
            2
        }
        Err(err) => {
            ctx.error(&format!("Error running handler: {err}"));
            2
        }
    }
}

/// SIGTERM, up to [`KILL_GRACE`] to exit, then SIGKILL (Consul's `killChild`).
async fn kill_child(child: &mut Child, verbose: bool, ctx: &mut Ctx) {
    // `id` is `None` once the child has been reaped: it is gone already.
    let Some(pid) = child.id() else {
        if verbose {
            ctx.info("No child process to kill");
        }
        return;
    };
    if verbose {
        ctx.info(format!("Terminating child pid {pid}"));
    }
    if let Err(err) = signal_pid(pid, Sig::Terminate).await {
        ctx.error(&format!("Failed to terminate {pid}: {err}"));
        return;
    }
    tokio::select! {
        status = child.wait() => {
            report_exit(ctx, status);
            if verbose {
                ctx.info("Child terminated");
            }
            return;
        }
        () = tokio::time::sleep(KILL_GRACE) => {
            if verbose {
                ctx.info(format!(
                    "Child did not exit after grace period of {}s",
                    KILL_GRACE.as_secs()
                ));
            }
        }
    }
    if verbose {
        ctx.info(format!("Killing child pid {pid}"));
    }
    if let Err(err) = child.start_kill() {
        ctx.error(&format!("Failed to kill {pid}: {err}"));
        return;
    }
    // Reap it, so no zombie is left while the lock is released.
    let status = child.wait().await;
    report_exit(ctx, status);
}

/// Sends a signal to the child. Through `kill(1)` because the workspace forbids the
/// `unsafe` a direct `kill(2)` needs. Safe against PID reuse: the caller still owns
/// the un-reaped child, so its PID cannot have been recycled.
async fn signal_pid(pid: u32, sig: Sig) -> std::io::Result<()> {
    let status = Command::new("kill")
        .args(["-s", sig.name(), &pid.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "kill: {}",
            exit_text(status)
        )))
    }
}

#[cfg(test)]
mod tests;
