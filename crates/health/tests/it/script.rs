//! Script checks: exit codes, combined output, truncation, timeouts, the switch.

use crate::support::*;
use std::time::Duration;
use tribune_health::{AddError, PlanError};
use tribune_types::model::CheckDefinition;
use tribune_types::HealthStatus::{Critical, Passing, Warning};

fn sh(id: &str, script: &str) -> CheckDefinition {
    let mut d = def(id);
    d.args = vec!["sh".into(), "-c".into(), script.into()];
    d
}

#[tokio::test]
async fn exit_codes_decide_the_status() {
    let (runner, mut rx) = runner(true);
    runner.add(&sh("ok", "echo fine")).expect("add");
    runner
        .add(&sh("warn", "echo one; echo two >&2; echo three; exit 1"))
        .expect("add");
    runner.add(&sh("crit", "exit 2")).expect("add");

    let r = next_for(&mut rx, "ok").await;
    assert_eq!((r.status, r.output.as_str()), (Passing, "fine\n"));
    let r = next_for(&mut rx, "warn").await;
    assert_eq!(r.status, Warning);
    // stdout and stderr share one pipe: the order is the script's.
    assert_eq!(r.output, "one\ntwo\nthree\n");
    let r = next_for(&mut rx, "crit").await;
    assert_eq!((r.status, r.output.as_str()), (Critical, ""));
    runner.shutdown().await;
}

#[tokio::test]
async fn long_output_keeps_its_tail_with_consuls_note() {
    let (runner, mut rx) = runner(true);
    let mut d = sh("chatty", "printf 0123456789abcdef");
    d.output_max_size = 10;
    runner.add(&d).expect("add");
    let r = next_for(&mut rx, "chatty").await;
    assert_eq!(r.status, Passing);
    assert_eq!(r.output, "Captured 10 of 16 bytes\n...\n6789abcdef");
    runner.shutdown().await;
}

#[tokio::test]
async fn a_script_past_its_timeout_is_killed_with_its_children() {
    let dir = std::env::temp_dir().join(format!("tribune-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pid_file = dir.join("sleeper.pid");
    let _ = std::fs::remove_file(&pid_file);
    let (runner, mut rx) = runner(true);
    // A background child that would outlive the shell if only the shell were killed.
    // Only the first run records its pid: later runs must not replace it with a
    // sleeper that is legitimately still alive.
    let mut d = sh(
        "hang",
        &format!(
            "echo started; sleep 30 & [ -e {f} ] || echo $! > {f}; wait",
            f = pid_file.display()
        ),
    );
    d.timeout = Some(Duration::from_millis(300));
    d.interval = Some(Duration::from_secs(1));
    runner.add(&d).expect("add");

    let r = next_for(&mut rx, "hang").await;
    assert_eq!(r.status, Critical);
    assert_eq!(r.output, "Timed out (300ms) running check\n\nstarted\n");

    #[cfg(target_os = "linux")]
    {
        let pid = std::fs::read_to_string(&pid_file).expect("pid file");
        let stat = format!("/proc/{}/stat", pid.trim());
        // SIGKILL was sent before the result; the kernel finishes the job
        // asynchronously, so poll /proc (no event to wait on) with a deadline.
        let gone = async {
            loop {
                match std::fs::read_to_string(&stat) {
                    Err(_) => return,
                    Ok(s) if s.split(' ').nth(2) == Some("Z") => return,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        };
        tokio::time::timeout(WAIT, gone)
            .await
            .expect("the script's child survived the timeout");
    }
    runner.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn scripts_are_refused_unless_enabled() {
    let (runner, _rx) = runner(false);
    let err = runner.add(&sh("nope", "exit 0")).unwrap_err();
    assert!(matches!(
        err,
        AddError::Invalid(PlanError::ScriptsDisabled { .. })
    ));
    assert_eq!(
        err.to_string(),
        "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true"
    );
    runner.shutdown().await;
}
