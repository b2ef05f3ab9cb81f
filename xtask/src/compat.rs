//! `cargo xtask compat go|py|all`: run real Consul clients' own test suites
//! against the `tribune` binary.
//!
//! * `go`: the official Go client `github.com/hashicorp/consul/api`, fetched from
//!   the Go module proxy (its module zip ships its `_test.go` files). Its test
//!   helper (`sdk/testutil`) starts a server by running `consul` from `$PATH`, so
//!   we put a `consul -> tribune` symlink first on `$PATH`.
//! * `py`: py-consul's sdist from PyPI, with its Docker-based root `conftest.py`
//!   replaced by `tests/compat/py/conftest.py`, which starts `tribune agent -dev`.
//!
//! Test failures are results, not errors: the command fails only when the harness
//! itself cannot run (binary missing, download or build failed, collection broke),
//! unless `--strict` is given. CI greps the summary lines:
//! `go-api: N passed, N failed, N skipped` and `py-consul: N passed, N failed, N skipped`
//! (plus `py-consul core|acl|connect|offline: …`). See `tests/compat/README.md`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Module path of the official Go client.
const GO_API_MODULE: &str = "github.com/hashicorp/consul/api";
/// Pinned client version: v1.30.0 is the `api` module released with Consul 1.20,
/// the version Tribune reports, so its tests expect exactly the behaviour we claim
/// (newer modules test features of later Consul releases, e.g. multi-port
/// services). It uses `sdk v0.16.1` and builds with Go >= 1.19.
/// Override: `TRIBUNE_COMPAT_GO_API_VERSION` (v1.34.5 with sdk v0.18.2 is the newest
/// that builds with Go 1.26.8; v1.31.x/v1.32.x carry `replace sdk => ../sdk`).
const GO_API_VERSION: &str = "v1.30.0";
/// The core set: the tests of kv_test.go (named `TestAPI_Client*` / `TestAPI_KV*`),
/// sessions, locks, semaphores and transactions (`TestAPI_ClientTxn`), catalog,
/// health, agent, status and the config-entry files. Plain `TestAPI_(KV|…|ConfigEntry)`
/// would miss most of them (`TestAPI_ClientPutGetDelete`, `TestAPI_ConfigEntries…`);
/// `TestAPI_ClientTLSOptions` runs against certificates made by [`client_certs`]. Also the operator raft and
/// autopilot tests (two real servers: join, promotion, transfer, removal), usage, and the
/// snapshot save/restore round trip (`TestAPI_Snapshot_Options` needs ACLs), the
/// network coordinate endpoints, the intentions API, the CA endpoints, prepared
/// queries and the discovery chain.
const GO_DEFAULT_RUN: &str = "^TestAPI_(KV|Client(PutGetDelete|List|DeleteCAS|CAS|Watch|Keys|AcquireRelease|Txn|TLSOptions)|Session|Lock|Semaphore|Catalog|Health|Agent|Status|ConfigEntr|OperatorRaft|OperatorAutopilot|OperatorUsage|Snapshot$|Coordinate|ConnectIntention|ConnectCA|PreparedQuery|DiscoveryChain)";
const GO_DEFAULT_TIMEOUT: &str = "30m";
const GO_DEFAULT_PARALLEL: &str = "2";

/// Pinned py-consul release (`pip index versions py-consul`: 1.8.0 is the latest).
/// Override: `TRIBUNE_COMPAT_PY_CONSUL_VERSION`.
const PY_CONSUL_VERSION: &str = "1.8.0";
/// Per-test timeout (pytest-timeout), seconds. The slowest upstream tests take
/// ~4 s against Consul; a hung blocking query should not cost minutes.
const PY_DEFAULT_TIMEOUT: &str = "60";

const USAGE: &str = "\
usage: cargo xtask compat <go|py|all> [options]

  go   [-run REGEX] [-timeout DUR] [-parallel N]   official Go client (github.com/hashicorp/consul/api)
  py   [-k EXPR] [-timeout SECS]                   py-consul's pytest suite
  all                                              both, with their defaults

common options:
  --strict     exit non-zero when any test fails (default: only on harness errors)
  --verbose    echo the suites' full output, not just one line per test

environment:
  TRIBUNE_BIN                          binary under test (default: <target>/debug/tribune)
  TRIBUNE_COMPAT_GO_API_VERSION        default v1.30.0
  TRIBUNE_COMPAT_PY_CONSUL_VERSION     default 1.8.0
  TRIBUNE_COMPAT_PYTHON                interpreter for the venv (default python3)
  GOMODCACHE / GOCACHE / GOFLAGS       honoured (Go's defaults persist across runs)
";

/// Entry point: `args` are the words after `compat` (a leading `compat` is skipped).
pub fn run(args: &[String]) -> Result<()> {
    let args = match args.first().map(String::as_str) {
        Some("compat") => &args[1..],
        _ => args,
    };
    let Some((suite, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        bail!("compat: missing suite (go, py or all)");
    };
    let opts = Opts::parse(suite, rest)?;
    let ctx = Ctx::new(opts.verbose)?;
    let failed = match suite.as_str() {
        "go" => run_go(&ctx, &opts)?,
        "py" => run_py(&ctx, &opts)?,
        "all" => {
            // Run both even if the first cannot; report harness errors at the end.
            let go = run_go(&ctx, &opts);
            if let Err(e) = &go {
                println!("go-api: harness error: {e:#}");
            }
            println!();
            let py = run_py(&ctx, &opts);
            if let Err(e) = &py {
                println!("py-consul: harness error: {e:#}");
            }
            match (go, py) {
                (Ok(a), Ok(b)) => a + b,
                (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
                (Err(a), Err(b)) => bail!("both suites failed to run:\n  go: {a:#}\n  py: {b:#}"),
            }
        }
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            return Ok(());
        }
        other => {
            eprint!("{USAGE}");
            bail!("compat: unknown suite {other:?}");
        }
    };
    if opts.strict && failed > 0 {
        bail!("{failed} compatibility test(s) failed (--strict)");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Options and shared context
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Opts {
    run: Option<String>,
    k: Option<String>,
    timeout: Option<String>,
    parallel: Option<String>,
    strict: bool,
    verbose: bool,
}

impl Opts {
    fn parse(suite: &str, args: &[String]) -> Result<Opts> {
        let mut o = Opts::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            // Go-style flags: -flag, --flag, -flag=value, -flag value.
            let trimmed = arg.trim_start_matches('-');
            if trimmed.len() == arg.len() {
                eprint!("{USAGE}");
                bail!("compat {suite}: unexpected argument {arg:?}");
            }
            let (name, inline) = match trimmed.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (trimmed, None),
            };
            let mut value = |flag: &str| -> Result<String> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| anyhow!("compat {suite}: -{flag} needs a value")),
                }
            };
            match (suite, name) {
                (_, "strict") => o.strict = true,
                (_, "verbose" | "v") => o.verbose = true,
                ("go", "run") => o.run = Some(value("run")?),
                ("go", "parallel") => o.parallel = Some(value("parallel")?),
                ("py", "k") => o.k = Some(value("k")?),
                ("go" | "py", "timeout") => o.timeout = Some(value("timeout")?),
                _ => {
                    eprint!("{USAGE}");
                    bail!("compat {suite}: unknown flag {arg:?}");
                }
            }
        }
        Ok(o)
    }
}

struct Ctx {
    root: PathBuf,
    /// `<target>/compat`
    out: PathBuf,
    verbose: bool,
}

impl Ctx {
    fn new(verbose: bool) -> Result<Ctx> {
        let root = crate::project_root();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
            Some(t) => root.join(t),
            None => root.join("target"),
        };
        let out = target.join("compat");
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        Ok(Ctx { root, out, verbose })
    }

    fn target(&self) -> &Path {
        self.out.parent().expect("compat dir has a parent")
    }

    /// The binary under test: `$TRIBUNE_BIN` or `<target>/debug/tribune`.
    fn binary(&self) -> Result<PathBuf> {
        let (bin, origin) = match std::env::var_os("TRIBUNE_BIN") {
            Some(b) => (PathBuf::from(b), "$TRIBUNE_BIN"),
            None => (self.target().join("debug/tribune"), "default path"),
        };
        let meta = fs::metadata(&bin).with_context(|| {
            format!(
                "tribune binary not found at {} ({origin}); build it with `cargo build -p tribune` \
                 or point TRIBUNE_BIN at it",
                bin.display()
            )
        })?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            bail!("{} is not an executable file", bin.display());
        }
        fs::canonicalize(&bin).with_context(|| format!("resolving {}", bin.display()))
    }
}

/// A private directory holding `consul` and `tribune` symlinks to the binary
/// under test, to be put first on `$PATH`. Removed on drop.
struct Shim {
    dir: PathBuf,
    bin: PathBuf,
}

impl Shim {
    fn new(bin: &Path, suite: &str) -> Result<Shim> {
        let dir =
            std::env::temp_dir().join(format!("tribune-compat-{suite}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for name in ["consul", "tribune"] {
            symlink(bin, dir.join(name))
                .with_context(|| format!("symlinking {name} in {}", dir.display()))?;
        }
        Ok(Shim {
            dir,
            bin: bin.to_path_buf(),
        })
    }

    fn path_env(&self) -> OsString {
        let mut paths = vec![self.dir.clone()];
        if let Some(p) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&p));
        }
        std::env::join_paths(paths).unwrap_or_else(|_| self.dir.clone().into_os_string())
    }

    /// Applies PATH and drops `CONSUL_*` variables (the clients read
    /// `CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`, … from the environment).
    fn apply(&self, cmd: &mut Command) {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CONSUL_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("PATH", self.path_env());
    }

    /// Runs `consul version -format=json` the way the Go helper does and says
    /// what came back. Never an error: a broken binary is a test result.
    fn preflight(&self) {
        let mut cmd = Command::new(self.dir.join("consul"));
        cmd.args(["version", "-format=json"]);
        self.apply(&mut cmd);
        println!("binary: {}", self.bin.display());
        match output_with_timeout(cmd, Duration::from_secs(10)) {
            Ok((status, stdout, _)) => {
                let version = serde_json::from_slice::<Value>(&stdout)
                    .ok()
                    .and_then(|v| v.get("Version").and_then(Value::as_str).map(str::to_string));
                match version {
                    Some(v) => println!("`consul version -format=json`: Version {v:?}"),
                    None => println!(
                        "warning: `consul version -format=json` ({status}) printed no JSON with a \
                         \"Version\" (Consul's Go test helper refuses to start such a server)"
                    ),
                }
            }
            Err(e) => println!("warning: `consul version -format=json` failed: {e:#}"),
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Running,
    Passed,
    Failed,
    Skipped,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl Counts {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Passed => self.passed += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed | Outcome::Running => self.failed += 1,
        }
    }

    fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }

    fn json(&self) -> Value {
        json!({"passed": self.passed, "failed": self.failed, "skipped": self.skipped})
    }
}

// ---------------------------------------------------------------------------
// Go: github.com/hashicorp/consul/api
// ---------------------------------------------------------------------------

fn run_go(ctx: &Ctx, opts: &Opts) -> Result<usize> {
    let version = env_or("TRIBUNE_COMPAT_GO_API_VERSION", GO_API_VERSION);
    let run = opts
        .run
        .clone()
        .unwrap_or_else(|| GO_DEFAULT_RUN.to_string());
    let timeout = opts
        .timeout
        .clone()
        .unwrap_or_else(|| GO_DEFAULT_TIMEOUT.to_string());
    let parallel = opts
        .parallel
        .clone()
        .unwrap_or_else(|| GO_DEFAULT_PARALLEL.to_string());

    let bin = ctx.binary()?;
    let go_version = capture(Command::new("go").arg("version"))
        .context("`go version` failed: the Go toolchain is needed for `compat go`")?;
    println!(
        "== go-api: {GO_API_MODULE}@{version} ({})",
        go_version.trim()
    );

    // GOFLAGS: keep the user's (e.g. -buildvcs=false from `go env -w`), add -mod=mod.
    let base_goflags = capture(Command::new("go").args(["env", "GOFLAGS"])).unwrap_or_default();
    let base_goflags = base_goflags.trim().to_string();
    let goflags = if base_goflags
        .split_whitespace()
        .any(|f| f.starts_with("-mod="))
    {
        base_goflags.clone()
    } else {
        format!("{base_goflags} -mod=mod").trim().to_string()
    };

    // 1. Fetch the module (the proxy's zip includes the tests) into the module cache.
    let module = format!("{GO_API_MODULE}@{version}");
    let mut dl = Command::new("go");
    dl.args(["mod", "download", "-json", &module])
        .current_dir(&ctx.out);
    let out = dl.output().context("running `go mod download`")?;
    let info: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`go mod download -json {module}` printed no JSON ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(err) = info.get("Error").and_then(Value::as_str) {
        bail!("downloading {module}: {err}");
    }
    let src = PathBuf::from(
        info.get("Dir")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("`go mod download -json {module}` gave no Dir"))?,
    );

    // 2. Writable copy (the module cache is read-only), refreshed every run.
    let godir = ctx.out.join("go");
    let work = godir.join(format!("api@{version}"));
    remove_tree(&work)?;
    copy_tree(&src, &work)
        .with_context(|| format!("copying {} to {}", src.display(), work.display()))?;
    // Our own tests in the package's terms (tests/compat/go/*_test.go), such as the
    // Go api.Lock against Tribune's Rust lock; upstream files are never modified.
    let ours = ctx.root.join("tests/compat/go");
    if let Ok(entries) = fs::read_dir(&ours) {
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().ends_with("_test.go") {
                fs::copy(e.path(), work.join(&name))
                    .with_context(|| format!("installing {}", e.path().display()))?;
            }
        }
    }

    // The TLS fixtures `TestAPI_ClientTLSOptions` reads from `../test/client_certs`
    // (not part of the module): made fresh each run, never committed.
    client_certs(&godir.join("test/client_certs"))?;

    // 3. Its dependencies (sdk/testutil, testify, …), then compile the test binary
    //    once so that build problems are harness errors, not test failures.
    let mut deps = Command::new("go");
    deps.args(["mod", "download"])
        .current_dir(&work)
        .env("GOFLAGS", &goflags);
    run_checked(deps, "go mod download (api test dependencies)")?;
    let test_bin = godir.join("api.test");
    let _ = fs::remove_file(&test_bin);
    let mut build = Command::new("go");
    build
        .args(["test", "-c", "-o"])
        .arg(&test_bin)
        .arg(".")
        .current_dir(&work)
        .env("GOFLAGS", &goflags);
    println!("compiling the api tests (cached after the first run)…");
    run_checked(build, "go test -c (compiling the api tests)")?;

    // 4. Run it under test2json, exactly like `go test -json` does. A panic in
    //    one test kills the whole test binary (easy against a partial server:
    //    `info["DebugConfig"][…].(string)` on a missing field), so tests left
    //    without a result are run again in a fresh binary, until every test has
    //    a result, the run times out, or a round makes no progress.
    let shim = Shim::new(&bin, "go")?;
    shim.preflight();
    let log_path = ctx.out.join("go-api.log");
    let events_path = ctx.out.join("go-api.json");
    let mut log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut events = fs::File::create(&events_path)?;
    writeln!(
        log,
        "# {GO_API_MODULE}@{version}, {}\n# binary: {}\n# run: {run}  timeout: {timeout}  parallel: {parallel}\n",
        go_version.trim(),
        bin.display()
    )?;

    let mut list = Command::new(&test_bin);
    list.arg(format!("-test.list={run}")).current_dir(&work);
    let listed: Vec<String> = capture(&mut list)
        .context("listing the selected tests")?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Benchmark") && !l.contains(' '))
        .map(str::to_string)
        .collect();
    if listed.is_empty() {
        bail!("go-api: -run {run:?} selects no test");
    }
    println!(
        "running {} tests: `go test -run '{run}'` (log: {})",
        listed.len(),
        rel(ctx, &log_path)
    );

    let mut state = GoState {
        verbose: ctx.verbose,
        ..GoState::default()
    };
    let mut pending = listed.clone();
    let mut reruns = Vec::new();
    for round in 1..=GO_MAX_ROUNDS {
        let selector = if round == 1 {
            run.clone()
        } else {
            format!("^({})$", pending.join("|"))
        };
        let mut cmd = Command::new("go");
        cmd.args(["tool", "test2json", "-t", "-p", GO_API_MODULE])
            .arg(&test_bin)
            .arg("-test.v=test2json")
            .arg(format!("-test.run={selector}"))
            .arg("-test.count=1")
            .arg(format!("-test.timeout={timeout}"))
            .arg(format!("-test.parallel={parallel}"))
            // tests refer to ../test/... relative to the package directory
            .current_dir(&work)
            .env("GOFLAGS", &goflags)
            // The tests that start agents with ACLs on (`makeACLClient`) get
            // them unenforced rather than refused; see ARCHITECTURE.md, ACLs.
            .env("TRIBUNE_ALLOW_UNENFORCED_ACLS", "1");
        shim.apply(&mut cmd);
        state.panicked.clear();
        let before = state.finished();
        let status = stream_process(cmd, &mut log, |line, log| {
            writeln!(events, "{line}")?;
            state.event(line, log)
        })?;
        writeln!(log, "\n# round {round}: test2json {status}")?;
        pending = listed
            .iter()
            .filter(|t| !matches!(state.tests.get(*t), Some((o, _)) if *o != Outcome::Running))
            .cloned()
            .collect();
        if pending.is_empty() || state.timed_out || state.finished() == before {
            break;
        }
        let who = if state.panicked.is_empty() {
            "unknown test".to_string()
        } else {
            state.panicked.join(", ")
        };
        let msg = format!(
            "the test binary died (panic in {who}); running the {} tests without a result again",
            pending.len()
        );
        println!("note: {msg}");
        writeln!(log, "\n# ---- {msg} ----\n")?;
        reruns.push(who);
    }
    drop(shim);

    // Selected tests that never got a result count as failed.
    for t in &pending {
        state
            .tests
            .entry(t.clone())
            .or_insert((Outcome::Running, 0.0));
    }
    let mut counts = Counts::default();
    let mut failing = Vec::new();
    for (name, (outcome, _)) in &state.tests {
        counts.add(*outcome);
        match outcome {
            Outcome::Failed => failing.push(name.clone()),
            Outcome::Running => failing.push(format!("{name} (no result: see the log)")),
            _ => {}
        }
    }

    println!("go-api: {}", counts.line());
    if !failing.is_empty() {
        println!("failing tests:");
        for name in &failing {
            let base = name.split(' ').next().unwrap_or(name);
            let mut notes = Vec::new();
            if state.all_panicked.iter().any(|p| p == base) {
                notes.push("panicked".to_string());
            }
            if let Some(subs) = state.failed_subtests.get(base) {
                let short: Vec<&str> = subs
                    .iter()
                    .map(|s| s.strip_prefix(base).unwrap_or(s).trim_start_matches('/'))
                    .collect();
                notes.push(short.join(", "));
            }
            if notes.is_empty() {
                println!("  {name}");
            } else {
                println!("  {name}  [{}]", notes.join("; "));
            }
        }
    }
    if state.timed_out {
        println!(
            "note: the run hit -timeout {timeout}: the tests running then and those not started count as failed"
        );
    }
    println!("log: {}", rel(ctx, &log_path));

    let summary = json!({
        "suite": "go-api",
        "module": GO_API_MODULE,
        "version": version,
        "run": run,
        "timed_out": state.timed_out,
        "panicked": state.all_panicked,
        "totals": counts.json(),
        "failing": failing,
        "tests": state
            .tests
            .iter()
            .map(|(k, (o, e))| (k.clone(), json!({"outcome": outcome_str(*o), "elapsed": e})))
            .collect::<serde_json::Map<_, _>>(),
    });
    fs::write(
        ctx.out.join("go-api.summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    Ok(counts.failed)
}

/// Bound on test-binary runs per invocation (first run + re-runs after panics).
const GO_MAX_ROUNDS: usize = 25;

/// What the test2json event stream has told us so far.
#[derive(Default)]
struct GoState {
    verbose: bool,
    /// Top-level tests: outcome and seconds.
    tests: BTreeMap<String, (Outcome, f64)>,
    failed_subtests: BTreeMap<String, Vec<String>>,
    /// Tests whose output has a `panic:` line, in this round / overall.
    panicked: Vec<String>,
    all_panicked: Vec<String>,
    timed_out: bool,
}

impl GoState {
    fn finished(&self) -> usize {
        self.tests
            .values()
            .filter(|(o, _)| *o != Outcome::Running)
            .count()
    }

    fn event(&mut self, line: &str, log: &mut fs::File) -> Result<()> {
        let Ok(ev) = serde_json::from_str::<Value>(line) else {
            writeln!(log, "{line}")?;
            if self.verbose {
                println!("{line}");
            }
            return Ok(());
        };
        let action = ev.get("Action").and_then(Value::as_str).unwrap_or("");
        let test = ev.get("Test").and_then(Value::as_str);
        if let Some(output) = ev.get("Output").and_then(Value::as_str) {
            log.write_all(output.as_bytes())?;
            if self.verbose {
                print!("{output}");
            }
            if output.starts_with("panic: test timed out") {
                self.timed_out = true;
            } else if output.starts_with("panic: ") {
                if let Some(t) = test {
                    let top = t.split('/').next().unwrap_or(t).to_string();
                    if !self.panicked.contains(&top) {
                        self.panicked.push(top.clone());
                    }
                    if !self.all_panicked.contains(&top) {
                        self.all_panicked.push(top);
                    }
                }
            }
        }
        let Some(test) = test else { return Ok(()) };
        let outcome = match action {
            "run" => Outcome::Running,
            "pass" => Outcome::Passed,
            "fail" => Outcome::Failed,
            "skip" => Outcome::Skipped,
            _ => return Ok(()),
        };
        if let Some((parent, _)) = test.split_once('/') {
            if outcome == Outcome::Failed {
                let subs = self.failed_subtests.entry(parent.to_string()).or_default();
                if !subs.iter().any(|s| s == test) {
                    subs.push(test.to_string());
                }
            }
            return Ok(());
        }
        let elapsed = ev.get("Elapsed").and_then(Value::as_f64).unwrap_or(0.0);
        self.tests.insert(test.to_string(), (outcome, elapsed));
        if outcome != Outcome::Running && !self.verbose {
            let tag = match outcome {
                Outcome::Passed => "PASS",
                Outcome::Skipped => "SKIP",
                _ => "FAIL",
            };
            println!("  {tag}  {test} ({elapsed:.2}s)");
        }
        Ok(())
    }
}

fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Passed => "passed",
        Outcome::Skipped => "skipped",
        Outcome::Failed | Outcome::Running => "failed",
    }
}

// ---------------------------------------------------------------------------
// Python: py-consul
// ---------------------------------------------------------------------------

fn run_py(ctx: &Ctx, opts: &Opts) -> Result<usize> {
    let version = env_or("TRIBUNE_COMPAT_PY_CONSUL_VERSION", PY_CONSUL_VERSION);
    let python = env_or("TRIBUNE_COMPAT_PYTHON", "python3");
    let timeout = opts
        .timeout
        .clone()
        .unwrap_or_else(|| PY_DEFAULT_TIMEOUT.to_string());
    let bin = ctx.binary()?;
    let py_version = capture(Command::new(&python).arg("--version")).with_context(|| {
        format!("`{python} --version` failed: Python 3.10+ is needed for `compat py`")
    })?;
    println!("== py-consul {version} ({})", py_version.trim());

    let conftest = ctx.root.join("tests/compat/py/conftest.py");
    let requirements = ctx.root.join("tests/compat/py/requirements.txt");
    for f in [&conftest, &requirements] {
        if !f.is_file() {
            bail!("{} is missing", f.display());
        }
    }

    // 1. The sdist (kept between runs).
    let pydir = ctx.out.join("py");
    let dl = pydir.join("dl");
    fs::create_dir_all(&dl)?;
    let sdist = match find_sdist(&dl, &version)? {
        Some(p) => p,
        None => {
            println!("downloading the py-consul=={version} sdist from PyPI…");
            let mut cmd = Command::new(&python);
            cmd.args([
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-binary",
                ":all:",
            ])
            .arg(format!("py-consul=={version}"))
            .arg("-d")
            .arg(&dl);
            run_checked(cmd, "pip download py-consul")?;
            find_sdist(&dl, &version)?.ok_or_else(|| {
                anyhow!(
                    "pip download left no py-consul {version} sdist in {}",
                    dl.display()
                )
            })?
        }
    };

    // 2. Fresh unpack every run, then our conftest over theirs.
    let src = pydir.join(format!("py_consul-{version}"));
    remove_tree(&src)?;
    let mut untar = Command::new(&python);
    untar.args(["-m", "tarfile", "-e"]).arg(&sdist).arg(&pydir);
    run_checked(untar, "unpacking the py-consul sdist")?;
    if !src.join("tests").is_dir() {
        bail!(
            "{} has no tests/ directory after unpacking {}",
            src.display(),
            sdist.display()
        );
    }
    fs::copy(&conftest, src.join("conftest.py")).context("installing our conftest.py")?;

    // 3. The venv, reinstalled only when requirements.txt (or the interpreter) changes.
    let venv = ctx.out.join("py-venv");
    let vpython = venv.join("bin/python");
    if !vpython.is_file() {
        println!("creating the venv {}…", rel(ctx, &venv));
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "venv"]).arg(&venv);
        run_checked(cmd, "python3 -m venv")?;
    }
    let stamp = venv.join(".tribune-requirements");
    let wanted = format!(
        "{}\n{}",
        py_version.trim(),
        fs::read_to_string(&requirements)?
    );
    if fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        println!(
            "installing test dependencies ({})…",
            rel(ctx, &requirements)
        );
        let mut cmd = Command::new(&vpython);
        cmd.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
        ])
        .arg(&requirements);
        run_checked(cmd, "pip install -r tests/compat/py/requirements.txt")?;
        fs::write(&stamp, &wanted)?;
    }

    // 4. pytest.
    let shim = Shim::new(&bin, "py")?;
    shim.preflight();
    let log_path = ctx.out.join("py-consul.log");
    let report_path = ctx.out.join("py-consul.report.json");
    let agent_logs = ctx.out.join("py-consul-agent-logs");
    let _ = fs::remove_file(&report_path);
    remove_tree(&agent_logs)?;
    fs::create_dir_all(&agent_logs)?;
    // A network namespace of our own when we may make one (root, or user
    // namespaces): a few upstream tests expect the agent on the default port 8500,
    // which only a private loopback can promise (see the conftest).
    let private_net = private_net_args();
    let mut cmd = if let Some(ns) = private_net {
        let mut c = Command::new("unshare");
        c.args(ns)
            .args(["--", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
            .arg(&vpython)
            .env("TRIBUNE_COMPAT_PRIVATE_NET", "1");
        c
    } else {
        println!("no private network namespace (unshare --net failed): tests that expect an agent on port 8500 will fail");
        Command::new(&vpython)
    };
    cmd.args([
        "-m",
        "pytest",
        "-o",
        "addopts=",
        "-p",
        "no:cacheprovider",
        "-v",
        "-rfE",
        "--tb=short",
    ])
    .arg(format!("--timeout={timeout}"));
    if let Some(k) = &opts.k {
        cmd.arg("-k").arg(k);
    }
    cmd.arg("tests")
        .current_dir(&src)
        .env("TRIBUNE_BIN", &bin)
        .env("TRIBUNE_COMPAT_REPORT", &report_path)
        .env("TRIBUNE_COMPAT_LOGS_DIR", &agent_logs)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    shim.apply(&mut cmd);
    let mut log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    writeln!(
        log,
        "# py-consul {version}, {}\n# binary: {}\n# -k: {}  per-test timeout: {timeout}s\n# private network namespace: {}\n",
        py_version.trim(),
        bin.display(),
        opts.k.as_deref().unwrap_or("(all)"),
        private_net.is_some()
    )?;
    println!(
        "running pytest (log: {}, agent logs: {})",
        rel(ctx, &log_path),
        rel(ctx, &agent_logs)
    );
    let verbose = ctx.verbose;
    let status = stream_process(cmd, &mut log, |line, log| {
        writeln!(log, "{line}")?;
        if verbose {
            println!("{line}");
        } else if line.starts_with("tests/") && is_pytest_result_line(line) {
            // `-v` progress: "<nodeid> PASSED   [ 12%]"
            println!("  {}", line.trim_end());
        }
        Ok(())
    })?;
    drop(shim);
    writeln!(log, "\n# pytest exit: {status}")?;

    let code = status.code();
    match code {
        Some(0) | Some(1) => {}
        Some(5) => bail!(
            "py-consul: pytest selected no tests (-k {}); see {}",
            opts.k.as_deref().unwrap_or("(none)"),
            log_path.display()
        ),
        _ => bail!(
            "py-consul: pytest did not complete (exit {status}: interrupted, collection or usage error); see {}",
            log_path.display()
        ),
    }
    let report: Value = serde_json::from_slice(
        &fs::read(&report_path)
            .with_context(|| format!("pytest wrote no report at {}", report_path.display()))?,
    )
    .context("parsing the pytest report")?;

    let groups = ["core", "acl", "connect", "offline"];
    let mut total = Counts::default();
    let mut by_group: BTreeMap<&str, Counts> =
        groups.iter().map(|g| (*g, Counts::default())).collect();
    let mut failing = Vec::new();
    for t in report
        .get("tests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = t.get("id").and_then(Value::as_str).unwrap_or("?");
        let group = t.get("group").and_then(Value::as_str).unwrap_or("core");
        let outcome = match t.get("outcome").and_then(Value::as_str) {
            Some("passed") => Outcome::Passed,
            Some("skipped") => Outcome::Skipped,
            _ => Outcome::Failed,
        };
        total.add(outcome);
        by_group
            .entry(
                groups
                    .iter()
                    .copied()
                    .find(|g| *g == group)
                    .unwrap_or("core"),
            )
            .or_default()
            .add(outcome);
        if outcome == Outcome::Failed {
            let msg = t.get("message").and_then(Value::as_str).unwrap_or("");
            failing.push((group.to_string(), id.to_string(), msg.to_string()));
        }
    }

    println!("py-consul: {}", total.line());
    for g in groups {
        println!("py-consul {g}: {}", by_group[g].line());
    }
    if !failing.is_empty() {
        println!("failing tests:");
        for (group, id, msg) in &failing {
            let msg: String = msg.chars().take(160).collect();
            println!("  [{group}] {id}  — {msg}");
        }
    }
    println!("log: {}", rel(ctx, &log_path));

    let summary = json!({
        "suite": "py-consul",
        "version": version,
        "k": opts.k,
        "totals": total.json(),
        "groups": by_group.iter().map(|(g, c)| (g.to_string(), c.json())).collect::<serde_json::Map<_, _>>(),
        "failing": failing.iter().map(|(g, id, m)| json!({"group": g, "id": id, "message": m})).collect::<Vec<_>>(),
    });
    fs::write(
        ctx.out.join("py-consul.summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    Ok(total.failed)
}

fn find_sdist(dir: &Path, version: &str) -> Result<Option<PathBuf>> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let stem = name.replace('-', "_");
        if stem == format!("py_consul_{version}.tar.gz") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn is_pytest_result_line(line: &str) -> bool {
    [
        " PASSED", " FAILED", " ERROR", " SKIPPED", " XFAIL", " XPASS",
    ]
    .iter()
    .any(|w| line.contains(w))
}

// ---------------------------------------------------------------------------
// Process and file helpers
// ---------------------------------------------------------------------------

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn rel(ctx: &Ctx, p: &Path) -> String {
    p.strip_prefix(&ctx.root).unwrap_or(p).display().to_string()
}

/// Runs a command, returning its stdout; an error (with stderr) if it fails.
fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a setup step, showing its output only if it fails.
fn run_checked(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot run {cmd:?}"))?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        bail!("{what} failed ({}):\n{}", out.status, tail_lines(&text, 40));
    }
    Ok(())
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a command with a time limit, collecting (status, stdout, stderr).
fn output_with_timeout(
    mut cmd: Command,
    limit: Duration,
) -> Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let out = read_in_thread(child.stdout.take());
    let err = read_in_thread(child.stderr.take());
    // Wait in a thread and take its answer with a deadline: no polling.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(limit) {
        Ok(status) => status?,
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            bail!("{cmd:?} did not finish within {limit:?}");
        }
    };
    Ok((
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

fn read_in_thread<R: Read + Send + 'static>(r: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs a suite, handing each stdout line to `on_line`; stderr is appended to
/// the log when the process ends. Everything the suite starts inherits a
/// `TRIBUNE_COMPAT_RUN=<unique id>` variable; whatever still carries it after
/// the suite exits (agents orphaned by a timed-out or crashed test binary) is
/// killed by pid. (No separate process group, so Ctrl-C still reaches it all.)
fn stream_process(
    mut cmd: Command,
    log: &mut fs::File,
    mut on_line: impl FnMut(&str, &mut fs::File) -> Result<()>,
) -> Result<ExitStatus> {
    let marker = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    cmd.env(RUN_MARKER, &marker);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child: Child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let err = read_in_thread(child.stderr.take());
    let result = (|| -> Result<()> {
        let stdout = child.stdout.take().expect("piped stdout");
        for line in BufReader::new(stdout).split(b'\n') {
            let line = line?;
            let line = String::from_utf8_lossy(&line);
            on_line(line.trim_end_matches('\r'), log)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let leftovers = kill_marked(&marker);
    let stderr = err.join().unwrap_or_default();
    if !stderr.is_empty() {
        writeln!(log, "\n# ---- stderr ----")?;
        log.write_all(&stderr)?;
        if !status.success() && status.code() != Some(1) {
            eprintln!("{}", tail_lines(&String::from_utf8_lossy(&stderr), 20));
        }
    }
    if !leftovers.is_empty() {
        writeln!(log, "\n# killed leftover processes: {leftovers:?}")?;
        println!(
            "note: killed {} leftover process(es) of this run: {leftovers:?}",
            leftovers.len()
        );
    }
    result?;
    Ok(status)
}

const RUN_MARKER: &str = "TRIBUNE_COMPAT_RUN";

/// SIGKILLs the processes (found through /proc) whose environment carries
/// this run's marker; returns their pids.
fn kill_marked(marker: &str) -> Vec<u32> {
    let needle = format!("{RUN_MARKER}={marker}");
    let me = std::process::id();
    let mut killed = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return killed;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = fs::read(e.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            let ok = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                killed.push(pid);
            }
        }
    }
    killed
}

/// `rm -rf`, first making directories writable (copies of the read-only Go
/// module cache, or an interrupted copy, would otherwise refuse).
fn remove_tree(p: &Path) -> Result<()> {
    if fs::symlink_metadata(p).is_err() {
        return Ok(());
    }
    make_writable(p);
    fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))
}

fn make_writable(p: &Path) {
    if let Ok(meta) = fs::symlink_metadata(p) {
        if meta.is_dir() {
            let _ = fs::set_permissions(
                p,
                fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
            );
            if let Ok(entries) = fs::read_dir(p) {
                for e in entries.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
}

/// Copies a directory tree, making everything user-writable.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if ty.is_file() {
            fs::copy(entry.path(), &dest)?;
            let mode = fs::metadata(&dest)?.permissions().mode();
            fs::set_permissions(&dest, fs::Permissions::from_mode((mode | 0o644) & 0o755))?;
        }
    }
    Ok(())
}

/// The `unshare` options that give a command a loopback of its own here: a
/// network namespace (root), or one inside a user namespace where this user is
/// root (unprivileged users, where the kernel allows user namespaces).
fn private_net_args() -> Option<&'static [&'static str]> {
    const CHOICES: [&[&str]; 2] = [&["--net"], &["--user", "--map-root-user", "--net"]];
    CHOICES.into_iter().find(|ns| {
        Command::new("unshare")
            .args(*ns)
            .args(["--", "ip", "link", "set", "lo", "up"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Writes what upstream's `test/client_certs` holds, with `openssl`: a CA
/// (`rootca.crt`), a server certificate for `consul.test`, `server.dc1.consul`,
/// `localhost` and 127.0.0.1 (`server.crt`/`.key`), and a client certificate
/// (`client.crt`/`.key`), ECDSA P-256 keys in SEC1 PEM as upstream's are.
fn client_certs(dir: &Path) -> Result<()> {
    remove_tree(dir)?;
    fs::create_dir_all(dir)?;
    let openssl = |args: &[&str]| -> Result<()> {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(dir);
        run_checked(
            cmd,
            &format!("openssl {}", args.first().copied().unwrap_or_default()),
        )
    };
    for key in ["rootca.key", "server.key", "client.key"] {
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            key,
        ])?;
    }
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "rootca.key",
        "-sha256",
        "-days",
        "3650",
        "-subj",
        "/CN=Tribune compat test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        "rootca.crt",
    ])?;
    for (name, cn, sans) in [
        (
            "server",
            "server.dc1.consul",
            "DNS:consul.test,DNS:server.dc1.consul,DNS:localhost,IP:127.0.0.1",
        ),
        (
            "client",
            "client.dc1.consul",
            "DNS:client.dc1.consul,DNS:localhost",
        ),
    ] {
        let ext = format!("{name}.ext");
        fs::write(
            dir.join(&ext),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={sans}\n"
            ),
        )?;
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            &csr,
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "rootca.crt",
            "-CAkey",
            "rootca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ])?;
    }
    Ok(())
}
