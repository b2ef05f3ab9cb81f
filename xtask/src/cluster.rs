//! `cargo xtask cluster up|status|down|kill|restart`: a real multi-node Tribune
//! cluster on this machine, to poke at by hand (HTTP, DNS, the CLI) and to watch
//! fail over.
//!
//! Every node is a detached `tribune agent` process on its own loopback address
//! (server `sI` on 127.0.0.I, client `cJ` on 127.0.0.(N+J)); Linux routes all of
//! 127.0.0.0/8 to `lo` with no setup, so every node keeps Consul's default ports
//! (HTTP 8500, DNS 8600, RPC 8300, serf 8301/8302) and every client default works.
//!
//! A cluster lives in one directory (default `<target>/cluster`): `cluster.json`
//! records each node's name, role, address, pid, data dir, log and full argv (so
//! `restart` re-runs a node exactly), next to one data dir and one `<node>.log`
//! per node. `down --keep-data` leaves the data dirs, and a later `up` on the same
//! directory reuses them.
//!
//! Liveness comes from `/proc`: a zombie is dead, and so is a pid whose command
//! line is no longer the recorded binary (the pid was reused, and must never be
//! signalled). Signals go through the `kill` command: the workspace forbids
//! `unsafe`, so no libc.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{cargo, run as run_cmd};

const USAGE: &str = "usage: cargo xtask cluster up [--servers N] [--clients M] [--dir D] [--release] [-- agent flags…]
       cargo xtask cluster status|down [--keep-data]|kill <node>|restart <node> [--dir D]";

/// Between looks while waiting: short, so commands return as soon as the thing happened.
const POLL: Duration = Duration::from_millis(100);

/// The words after `cluster`, parsed.
#[derive(Debug, Default, PartialEq)]
struct Opts {
    cmd: String,
    node: Option<String>,
    servers: usize,
    clients: usize,
    dir: Option<PathBuf>,
    release: bool,
    keep_data: bool,
    extra: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let Some((cmd, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    let allowed: &[&str] = match cmd.as_str() {
        "up" => &["--servers", "--clients", "--dir", "--release", "--"],
        "status" | "kill" | "restart" => &["--dir"],
        "down" => &["--dir", "--keep-data"],
        _ => bail!("unknown cluster command {cmd:?}\n{USAGE}"),
    };
    let mut o = Opts {
        cmd: cmd.clone(),
        servers: 3,
        ..Opts::default()
    };
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        if !flag.starts_with("--") {
            if matches!(cmd.as_str(), "kill" | "restart") && o.node.is_none() {
                o.node = Some(arg.clone());
                continue;
            }
            bail!("unexpected argument {arg:?}\n{USAGE}");
        }
        if !allowed.contains(&flag) {
            bail!("`cluster {cmd}` takes no {flag}\n{USAGE}");
        }
        let is_switch = matches!(flag, "--" | "--release" | "--keep-data");
        if is_switch && inline.is_some() {
            bail!("{flag} takes no value");
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag {
            "--servers" => o.servers = value()?.parse().context("--servers: not a number")?,
            "--clients" => o.clients = value()?.parse().context("--clients: not a number")?,
            "--dir" => o.dir = Some(value()?.into()),
            "--release" => o.release = true,
            "--keep-data" => o.keep_data = true,
            _ => o.extra = it.by_ref().cloned().collect(), // "--": the rest is the agent's
        }
    }
    if matches!(cmd.as_str(), "kill" | "restart") && o.node.is_none() {
        bail!("`cluster {cmd}` needs a node name (s1, c1, …)\n{USAGE}");
    }
    // One loopback address per node, and .255 is broadcast.
    if o.servers == 0 || o.servers + o.clients > 254 {
        bail!(
            "need 1 to 254 nodes, servers included (got {} servers, {} clients)",
            o.servers,
            o.clients
        );
    }
    Ok(o)
}

/// One agent of the cluster, as recorded in `cluster.json`.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    name: String,
    server: bool,
    ip: String,
    /// `None` once we know it is dead (`kill`), or if it never started.
    pid: Option<u32>,
    data_dir: PathBuf,
    log: PathBuf,
    argv: Vec<String>,
}

impl Node {
    fn role(&self) -> &'static str {
        if self.server {
            "server"
        } else {
            "client"
        }
    }

    fn http(&self) -> String {
        format!("{}:8500", self.ip)
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name, "role": self.role(), "ip": self.ip, "pid": self.pid,
            "data_dir": self.data_dir.display().to_string(),
            "log": self.log.display().to_string(), "argv": self.argv,
        })
    }

    fn from_json(v: &Value) -> Option<Node> {
        let s = |k: &str| v.get(k)?.as_str().map(str::to_owned);
        Some(Node {
            name: s("name")?,
            server: s("role")? == "server",
            ip: s("ip")?,
            pid: v.get("pid")?.as_u64().and_then(|p| u32::try_from(p).ok()),
            data_dir: s("data_dir")?.into(),
            log: s("log")?.into(),
            argv: (v.get("argv")?.as_array()?.iter())
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
        })
    }
}

/// The nodes of a fresh cluster, not yet started.
fn plan(bin: &Path, servers: usize, clients: usize, dir: &Path, extra: &[String]) -> Vec<Node> {
    (1..=servers + clients)
        .map(|n| {
            let server = n <= servers;
            let name = if server {
                format!("s{n}")
            } else {
                format!("c{}", n - servers)
            };
            let ip = format!("127.0.0.{n}");
            let data_dir = dir.join(&name);
            let mut argv = vec![bin.display().to_string(), "agent".to_owned()];
            if server {
                argv.extend(["-server".to_owned(), format!("-bootstrap-expect={servers}")]);
            }
            argv.extend([
                format!("-node={name}"),
                format!("-bind={ip}"),
                format!("-client={ip}"),
                format!("-data-dir={}", data_dir.display()),
                "-log-level=info".to_owned(),
            ]);
            // Everyone joins through s1; s1 itself (and the clients, in case s1 is
            // the one that is down) also through s2, so it finds someone.
            let via_s2 = (n == 1 || !server) && servers >= 2;
            argv.push("-retry-join=127.0.0.1".to_owned());
            if via_s2 {
                argv.push("-retry-join=127.0.0.2".to_owned());
            }
            // The default is 30 s: a node that starts a moment before its peers
            // listen would otherwise sit alone for half a minute.
            argv.push("-retry-interval=1s".to_owned());
            argv.extend(extra.iter().cloned());
            let log = dir.join(format!("{name}.log"));
            Node {
                name,
                server,
                ip,
                pid: None,
                data_dir,
                log,
                argv,
            }
        })
        .collect()
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("cluster.json")
}

fn render_state(nodes: &[Node]) -> String {
    let nodes: Vec<Value> = nodes.iter().map(Node::to_json).collect();
    format!("{:#}\n", json!({ "nodes": nodes }))
}

fn parse_state(text: &str) -> Result<Vec<Node>> {
    let v: Value = serde_json::from_str(text)?;
    (v.get("nodes")
        .and_then(Value::as_array)
        .context("no `nodes` list")?
        .iter())
    .map(|n| Node::from_json(n).with_context(|| format!("malformed node entry {n}")))
    .collect()
}

fn load(dir: &Path) -> Result<Vec<Node>> {
    let path = state_path(dir);
    match fs::read_to_string(&path) {
        Ok(text) => parse_state(&text).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no cluster in {} (start one with `cargo xtask cluster up`)",
                dir.display()
            )
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Written aside and renamed, so a Ctrl-C mid-write cannot leave a torn file
/// that `down` can no longer read.
fn save(dir: &Path, nodes: &[Node]) -> Result<()> {
    let (path, tmp) = (state_path(dir), dir.join("cluster.json.tmp"));
    fs::write(&tmp, render_state(nodes)).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// The node's pid if that process is still running and is still the one we started.
fn alive(node: &Node) -> Option<u32> {
    let pid = node.pid?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state letter follows the command name, which is in parentheses and may
    // itself contain spaces or ')'.
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|&b| b == 0).next()?;
    (state != 'Z' && argv0 == node.argv.first()?.as_bytes()).then_some(pid)
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    // Racing the process's own exit is harmless: `kill` then fails, which is why
    // its complaint is silenced; callers check liveness afterwards instead.
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    Ok(())
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// SIGTERM (an agent leaves gracefully on it), up to 10 s, then SIGKILL.
fn stop(nodes: &[Node]) -> Result<()> {
    let live: Vec<(&Node, u32)> = nodes.iter().filter_map(|n| Some((n, alive(n)?))).collect();
    for &(_, pid) in &live {
        signal(pid, "TERM")?;
    }
    let gone = || live.iter().all(|(n, _)| alive(n).is_none());
    if wait_until(Duration::from_secs(10), gone) {
        return Ok(());
    }
    for &(n, pid) in live.iter().filter(|(n, _)| alive(n).is_some()) {
        eprintln!(
            "{}: still running 10 s after SIGTERM, sending SIGKILL",
            n.name
        );
        signal(pid, "KILL")?;
    }
    if !wait_until(Duration::from_secs(2), gone) {
        let left: Vec<&str> = (live.iter().filter(|(n, _)| alive(n).is_some()))
            .map(|(n, _)| n.name.as_str())
            .collect();
        bail!("could not stop {}", left.join(", "));
    }
    Ok(())
}

fn open_log(path: &Path) -> Result<File> {
    let log = OpenOptions::new().create(true).append(true).open(path);
    log.with_context(|| format!("opening {}", path.display()))
}

/// Starts `node` detached, its output appended to its log, and returns its pid.
fn spawn(node: &Node) -> Result<u32> {
    fs::create_dir_all(&node.data_dir)
        .with_context(|| format!("creating {}", node.data_dir.display()))?;
    let log = open_log(&node.log)?;
    let (prog, args) = node.argv.split_first().context("empty argv")?;
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C while `up` waits for a leader (or at the
        // shell afterwards) must not reach the cluster.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} ({prog})", node.name))?;
    // Never waited for: the agent outlives xtask on purpose, and init reaps it.
    Ok(child.id())
}

/// A bare HTTP/1.0 GET: enough for the status endpoints, without needing curl.
fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let sock: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad address {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("truncated HTTP response")?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    Ok((status.context("bad HTTP status line")?, body.to_owned()))
}

fn get_json(addr: &str, path: &str) -> Result<Value> {
    let (status, body) = http_get(addr, path)?;
    if status != 200 {
        bail!("HTTP {status}: {}", body.trim());
    }
    Ok(serde_json::from_str(&body)?)
}

/// The leader's RPC address as `addr` sees it; empty while there is none.
fn leader(addr: &str) -> Result<String> {
    Ok(get_json(addr, "/v1/status/leader")?
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let body = rows
        .iter()
        .map(|r| line(r.iter().map(String::as_str).collect()));
    std::iter::once(line(header.to_vec())).chain(body).collect()
}

/// Entry point: `args` are the words after `cluster`.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let dir = match &o.dir {
        // Absolute, because the state file and the agents' argv outlive this cwd.
        Some(d) => std::path::absolute(d)?,
        None => crate::target_dir().join("cluster"),
    };
    // Echoed into the commands we suggest, so they can be pasted as they are.
    let hint = o
        .dir
        .as_ref()
        .map(|_| format!(" --dir {}", dir.display()))
        .unwrap_or_default();
    let node = o.node.as_deref().unwrap_or_default();
    match o.cmd.as_str() {
        "up" => up(&o, &dir, &hint),
        "status" => status(&dir),
        "down" => down(&dir, o.keep_data),
        "kill" => kill(&dir, node),
        _ => restart(&dir, node),
    }
}

fn up(o: &Opts, dir: &Path, hint: &str) -> Result<()> {
    if let Ok(nodes) = load(dir) {
        let live: Vec<&str> = (nodes.iter().filter(|n| alive(n).is_some()))
            .map(|n| n.name.as_str())
            .collect();
        if !live.is_empty() {
            bail!(
                "a cluster is already running in {} ({} alive): run `cargo xtask cluster down{hint}` first",
                dir.display(),
                live.join(", ")
            );
        }
    }
    crate::prereqs::ensure()?;
    let mut build = cargo();
    build.args(["build", "-p", "tribune"]);
    if o.release {
        build.arg("--release");
    }
    run_cmd(&mut build)?;
    let bin = crate::target_dir()
        .join(if o.release { "release" } else { "debug" })
        .join("tribune");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut nodes = plan(&bin, o.servers, o.clients, dir, &o.extra);
    let started = nodes.iter_mut().try_for_each(|n| {
        File::create(&n.log).with_context(|| format!("creating {}", n.log.display()))?;
        n.pid = Some(spawn(n)?);
        Ok::<_, anyhow::Error>(())
    });
    // Saved even when a start failed, so `down` can stop the ones that did start.
    save(dir, &nodes)?;
    started.with_context(|| format!("`cargo xtask cluster down{hint}` stops the rest"))?;

    println!(
        "started {} node(s); waiting for a leader on {} …",
        nodes.len(),
        nodes[0].http()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        match leader(&nodes[0].http()) {
            Ok(l) if !l.is_empty() => break l,
            _ => {}
        }
        if let Some(dead) = nodes.iter().find(|n| alive(n).is_none()) {
            bail!(
                "{} exited (log: {}); `cargo xtask cluster down{hint}` stops the others",
                dead.name,
                dead.log.display()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "no leader after 60 s; the nodes are still running: see their logs in {}, \
                 `cargo xtask cluster status{hint}`, `cargo xtask cluster down{hint}`",
                dir.display()
            );
        }
        std::thread::sleep(POLL);
    };

    let rows: Vec<Vec<String>> = (nodes.iter())
        .map(|n| {
            let pid = n.pid.map(|p| p.to_string()).unwrap_or_default();
            let dns = format!("{}:8600", n.ip);
            vec![
                n.name.clone(),
                n.role().into(),
                n.http(),
                dns,
                pid,
                n.log.display().to_string(),
            ]
        })
        .collect();
    println!("leader: {leader}\n");
    print!(
        "{}",
        table(&["node", "role", "HTTP", "DNS", "pid", "log"], &rows)
    );
    let other = nodes.get(1).unwrap_or(&nodes[0]);
    println!(
        "\ntry:\n  curl http://127.0.0.1:8500/v1/status/peers\n  \
         dig @127.0.0.1 -p 8600 consul.service.consul\n  \
         CONSUL_HTTP_ADDR={} {} members\n  \
         cargo xtask cluster status{hint}   (also: kill {n}, restart {n}, down)",
        other.http(),
        bin.display(),
        n = other.name,
    );
    Ok(())
}

fn status(dir: &Path) -> Result<()> {
    let nodes = load(dir)?;
    let shown = |r: Result<String>| match r {
        Ok(s) if s.is_empty() => "(none)".to_owned(),
        Ok(s) => s,
        Err(e) => format!("error: {e}"),
    };
    let rows: Vec<Vec<String>> = (nodes.iter())
        .map(|n| {
            let pid = n.pid.map_or("-".to_owned(), |p| p.to_string());
            let (state, leader, peers) = match alive(n) {
                None => ("dead", "-".to_owned(), "-".to_owned()),
                Some(_) => {
                    let peers = get_json(&n.http(), "/v1/status/peers").map(|v| match v {
                        Value::Array(p) => p
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" "),
                        other => other.to_string(),
                    });
                    ("alive", shown(leader(&n.http())), shown(peers))
                }
            };
            vec![
                n.name.clone(),
                n.role().into(),
                pid,
                state.into(),
                n.http(),
                leader,
                peers,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["node", "role", "pid", "state", "HTTP", "leader", "peers"],
            &rows
        )
    );
    Ok(())
}

fn down(dir: &Path, keep_data: bool) -> Result<()> {
    let nodes = load(dir)?;
    stop(&nodes)?;
    fs::remove_file(state_path(dir))?;
    if !keep_data {
        for d in nodes.iter().map(|n| &n.data_dir) {
            // Only inside the cluster directory: this is a recursive delete driven
            // by a JSON file anyone can edit.
            if d.starts_with(dir) && d != dir {
                match fs::remove_dir_all(d) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).with_context(|| format!("removing {}", d.display()))
                    }
                    _ => {}
                }
            }
        }
    }
    let data = if keep_data {
        "data kept"
    } else {
        "data removed"
    };
    println!("cluster in {} stopped ({data}; logs kept)", dir.display());
    Ok(())
}

fn find<'a>(nodes: &'a mut [Node], name: &str) -> Result<&'a mut Node> {
    let names = nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    (nodes.iter_mut().find(|n| n.name == name))
        .with_context(|| format!("no node {name:?} in this cluster (it has {names})"))
}

fn kill(dir: &Path, name: &str) -> Result<()> {
    let mut nodes = load(dir)?;
    let node = find(&mut nodes, name)?;
    match alive(node) {
        Some(pid) => {
            signal(pid, "KILL")?;
            if !wait_until(Duration::from_secs(2), || alive(node).is_none()) {
                bail!("{name} (pid {pid}) survived SIGKILL");
            }
            println!("{name}: killed pid {pid}");
        }
        None => println!("{name} was not running"),
    }
    node.pid = None;
    save(dir, &nodes)
}

fn restart(dir: &Path, name: &str) -> Result<()> {
    let mut nodes = load(dir)?;
    let node = find(&mut nodes, name)?;
    stop(std::slice::from_ref(node))?;
    // A marker, so the appended log shows where the new run begins.
    writeln!(
        open_log(&node.log)?,
        "\n--- cargo xtask cluster restart {name} ---"
    )?;
    let started = spawn(node);
    node.pid = started.as_ref().ok().copied();
    let log = node.log.clone();
    save(dir, &nodes)?;
    println!(
        "{name}: restarted as pid {} (log: {})",
        started?,
        log.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_arguments() {
        let o = parse(&args("up")).unwrap();
        assert_eq!(
            (o.servers, o.clients, o.release, o.dir),
            (3, 0, false, None)
        );

        let o = parse(&args(
            "up --servers=5 --clients 2 --dir d --release -- -ui -foo=1",
        ))
        .unwrap();
        assert_eq!((o.servers, o.clients, o.release), (5, 2, true));
        assert_eq!(o.dir, Some(PathBuf::from("d")));
        assert_eq!(o.extra, args("-ui -foo=1"));

        let o = parse(&args("down --keep-data")).unwrap();
        assert!(o.keep_data);
        assert_eq!(
            parse(&args("restart s2 --dir x")).unwrap().node.as_deref(),
            Some("s2")
        );

        for bad in [
            "",
            "sideways",
            "kill",
            "kill s1 s2",
            "status --release",
            "down --keep-data=no",
            "up --servers",
            "up --servers x",
            "up --servers 0",
            "up --servers 200 --clients 55",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn plans_servers_and_clients() {
        let dir = Path::new("/c");
        let nodes = plan(Path::new("/t/tribune"), 3, 2, dir, &args("-ui"));
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2", "s3", "c1", "c2"]);
        assert_eq!(
            nodes[0].argv,
            args(
                "/t/tribune agent -server -bootstrap-expect=3 -node=s1 -bind=127.0.0.1 \
                  -client=127.0.0.1 -data-dir=/c/s1 -log-level=info -retry-join=127.0.0.1 \
                  -retry-join=127.0.0.2 -retry-interval=1s -ui"
            )
        );
        assert!(!nodes[1].argv.iter().any(|a| a == "-retry-join=127.0.0.2"));
        let c2 = &nodes[4];
        assert_eq!(
            (c2.ip.as_str(), c2.server, c2.pid),
            ("127.0.0.5", false, None)
        );
        assert_eq!(
            (c2.data_dir.as_path(), c2.log.as_path()),
            (Path::new("/c/c2"), Path::new("/c/c2.log"))
        );
        assert_eq!(
            c2.argv,
            args("/t/tribune agent -node=c2 -bind=127.0.0.5 -client=127.0.0.5 -data-dir=/c/c2 \
                  -log-level=info -retry-join=127.0.0.1 -retry-join=127.0.0.2 -retry-interval=1s -ui")
        );
        // A lone server has no s2 to look for.
        let solo = plan(Path::new("/t/tribune"), 1, 0, dir, &[]);
        assert!(!solo[0].argv.iter().any(|a| a == "-retry-join=127.0.0.2"));
    }

    #[test]
    fn state_file_round_trips() {
        let mut nodes = plan(Path::new("/t/tribune"), 2, 1, Path::new("/c"), &[]);
        nodes[0].pid = Some(4242);
        assert_eq!(parse_state(&render_state(&nodes)).unwrap(), nodes);
        assert!(parse_state("{}").is_err());
        assert!(parse_state(r#"{"nodes":[{"name":"s1"}]}"#).is_err());
    }

    #[test]
    fn parses_http_responses_and_tables() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n\"127.0.0.1:8300\"";
        assert_eq!(
            parse_response(raw).unwrap(),
            (200, "\"127.0.0.1:8300\"".to_owned())
        );
        assert!(parse_response(b"HTTP/1.1 200").is_err());
        let t = table(&["node", "pid"], &[vec!["s10".into(), "7".into()]]);
        assert_eq!(t, "node  pid\ns10   7\n");
    }

    #[test]
    fn a_dead_pid_is_not_alive() {
        let mut n = plan(Path::new("/t/tribune"), 1, 0, Path::new("/c"), &[]).remove(0);
        assert_eq!(alive(&n), None);
        // Our own pid is running, but not the recorded binary: never ours to signal.
        n.pid = Some(std::process::id());
        assert_eq!(alive(&n), None);
    }
}
