//! `gossip`: the gossip benchmark of issue 3, on the simulated network of
//! `tribune-gossip` ([`SimNet`]: the real sans-io cores, manual time, seeded),
//! with the LAN profile — which is Consul's LAN defaults (probe 1 s, probe
//! timeout 500 ms, suspicion ×4, gossip every 200 ms to 3 members; checked and
//! printed at the start).
//!
//! For each cluster size, on a few clusters with different seeds:
//!
//! - **Detection.** After a random wait of 0–1 s (a random phase against every
//!   member's probe schedule), a random member is stopped (the simulated
//!   `kill -9`: datagrams to it are lost, push/pulls fail). Measured: when the
//!   first member suspects it (sampled every 10 ms), when the first marks it failed
//!   and when the last running member does (exact, from the event timestamps).
//!   The member is then restarted and rejoins, and the cluster settles before the
//!   next trial.
//! - **Broadcast.** A user event fired from a random member, after a random wait:
//!   the time until every member has delivered it (exact).
//! - **Steady-state traffic.** Bytes sent per member per second over a quiet
//!   window (no failures, no events): probes, acks and push/pull exchanges.
//! - **Starvation.** One member is paused as `SIGSTOP` pauses a process (no
//!   timers, datagrams queued in its receive buffer, see [`SimNet::pause`]) for
//!   30 s in all, in one of three patterns ([`Starvation`]): bursts (stopped
//!   3–8 s, running 0.5–1 s, repeated until 30 s of stopped time) at random
//!   instants; the same bursts, each pause landing just after the member sent a
//!   ping (its ack then waits in the buffer while the probe's deadline passes: the
//!   stale view Lifeguard is about); or one 30 s stall. Then 90 s more of normal
//!   running, long enough for any suspicion the starved member raised to run out.
//!   Counted: members other than the starved one marked failed by anyone (false
//!   failures; the starved one being declared failed is correct), and the
//!   starved member's own accusations.
//!
//! All times are simulated, so the figures do not depend on this machine's load;
//! only the wall time does. There is no packet loss and a fixed one-way latency
//! (`--latency-us`). Percentiles are nearest-rank over the trials.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tribune_gossip::config::{retransmit_limit, suspicion_timeout, CoreConfig};
use tribune_gossip::core::{Event, MemberEventKind, NodeState};
use tribune_gossip::keyring::SEAL_OVERHEAD;
use tribune_gossip::sim::{SimNet, SimTraffic};
use tribune_gossip::wire::Message;

use crate::report::TargetLine;

/// Usage text.
pub const USAGE: &str = "\
usage: tribune-benches gossip [options]

  --sizes LIST           cluster sizes (default 16,64,128)
  --clusters N           clusters (seeds) per size (default 10)
  --trials N             kills and events per cluster (default 10 of each)
  --starve N             starvation runs per size of each burst pattern (default
                         5), plus one 30 s stall
  --steady SECS          quiet window for the traffic figures, per cluster
                         (default 120)
  --latency-us N         one-way network latency (default 500)
  --suspicion-mult N     override the LAN profile's suspicion multiplier (4) to
                         explore; the figures are then not Consul's defaults
  --seed N               base seed (default 1)
  --json PATH            also write the results as JSON
";

/// The size the targets are stated at.
const TARGET_SIZE: usize = 64;
const DETECT_P50_GOAL: Duration = Duration::from_secs(6);
const DETECT_P99_GOAL: Duration = Duration::from_secs(8);
const BROADCAST_GOAL: Duration = Duration::from_millis(1500);
/// Total stopped time of a starvation run.
const STARVE_TOTAL: Duration = Duration::from_secs(30);
/// Normal running after it, before counting: longer than the largest suspicion
/// timeout (6 × 4 × log10(128) s ≈ 51 s at 128 members).
const STARVE_AFTER: Duration = Duration::from_secs(90);
/// Give up on a trial after this long (counted as a miss).
const TRIAL_LIMIT: Duration = Duration::from_secs(120);
/// How often suspicion is sampled during a detection trial.
const POLL: Duration = Duration::from_millis(10);

struct Opts {
    sizes: Vec<usize>,
    clusters: usize,
    trials: usize,
    starve: usize,
    steady: Duration,
    latency: Duration,
    seed: u64,
    json: Option<PathBuf>,
    cfg: CoreConfig,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        sizes: vec![16, 64, 128],
        clusters: 10,
        trials: 10,
        starve: 5,
        steady: Duration::from_secs(120),
        latency: Duration::from_micros(500),
        seed: 1,
        json: None,
        cfg: CoreConfig::lan(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--sizes" => {
                o.sizes = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--clusters" => o.clusters = value()?.parse()?,
            "--trials" => o.trials = value()?.parse()?,
            "--starve" => o.starve = value()?.parse()?,
            "--steady" => o.steady = Duration::from_secs(value()?.parse()?),
            "--latency-us" => o.latency = Duration::from_micros(value()?.parse()?),
            "--seed" => o.seed = value()?.parse()?,
            "--json" => o.json = Some(value()?.into()),
            "--suspicion-mult" => o.cfg.suspicion_mult = value()?.parse()?,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprint!("{USAGE}");
                bail!("unknown option {other}")
            }
        }
    }
    o.cfg.validate()?;
    if o.sizes.iter().any(|&n| n < 4) || o.clusters == 0 {
        bail!("every size must be at least 4, and --clusters at least 1");
    }
    Ok(o)
}

/// One crash, timed from the stop.
struct Kill {
    first_suspect: Option<Duration>,
    first_failed: Option<Duration>,
    all_failed: Option<Duration>,
}

/// How the starved member's 30 s of stopped time are laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Starvation {
    /// Stopped 3–8 s, running 0.5–1 s, pauses at random instants.
    Bursts,
    /// The same, each pause right after the member sent a ping.
    MidProbe,
    /// One 30 s stop.
    Stall,
}

impl Starvation {
    fn label(self) -> &'static str {
        match self {
            Starvation::Bursts => "bursts",
            Starvation::MidProbe => "bursts, pausing mid-probe",
            Starvation::Stall => "one 30 s stall",
        }
    }
}

/// One starvation run.
struct Starve {
    mode: Starvation,
    bursts: usize,
    /// Failed events, on any member, for members other than the starved one.
    false_failures: usize,
    /// Distinct healthy members that someone marked failed.
    falsely_failed: usize,
    /// Members that marked the starved one failed at least once.
    starved_failed_by: usize,
    /// Whether every member saw the starved one alive at the end.
    starved_alive_at_end: bool,
    starved_accusations: u64,
    starved_refutations: u64,
    healthy_refutations: u64,
    overflows: u64,
}

/// Everything measured at one size.
struct SizeResult {
    n: usize,
    kills: Vec<Kill>,
    events: Vec<Option<Duration>>,
    traffic: SimTraffic,
    traffic_secs: f64,
    starves: Vec<Starve>,
    wall: Duration,
}

/// Entry point.
pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let cfg = &opts.cfg;
    let consul = cfg.probe_interval == Duration::from_secs(1)
        && cfg.probe_timeout == Duration::from_millis(500)
        && cfg.suspicion_mult == 4
        && cfg.gossip_interval == Duration::from_millis(200)
        && cfg.gossip_nodes == 3;
    println!(
        "profile: probe {:?}, probe timeout {:?}, suspicion ×{} (max ×{}), gossip {:?} to {}, retransmit ×{}, push/pull {:?}: {}",
        cfg.probe_interval,
        cfg.probe_timeout,
        cfg.suspicion_mult,
        cfg.suspicion_max_timeout_mult,
        cfg.gossip_interval,
        cfg.gossip_nodes,
        cfg.retransmit_mult,
        cfg.push_pull_interval,
        if consul {
            "Consul's LAN defaults (the LAN profile)"
        } else {
            "NOT Consul's LAN defaults"
        }
    );
    for &n in &opts.sizes {
        let min = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval);
        println!(
            "         at {n} members: suspicion timeout {:.2}–{:.2} s, each broadcast sent {} times",
            min.as_secs_f64(),
            (min * cfg.suspicion_max_timeout_mult).as_secs_f64(),
            retransmit_limit(cfg.retransmit_mult, n)
        );
    }
    println!(
        "plan:    sizes {:?}; per size {} cluster(s) × {} kills and {} events, {} s quiet window each; {} × 2 burst + 1 stall starvation run(s); latency {:?}, no loss",
        opts.sizes,
        opts.clusters,
        opts.trials,
        opts.trials,
        opts.steady.as_secs(),
        opts.starve,
        opts.latency
    );
    let mut results = Vec::new();
    for &n in &opts.sizes {
        results.push(measure_size(&opts, n));
    }
    println!();
    print!("{}", tables(&results));
    let targets = targets(&results);
    println!();
    for t in &targets {
        println!("{}", t.line());
    }
    if let Some(path) = &opts.json {
        let doc = json!({
            "meta": {
                "sizes": opts.sizes,
                "clusters": opts.clusters,
                "trials": opts.trials,
                "latency_us": opts.latency.as_micros() as u64,
                "seed": opts.seed,
                "consul_lan_defaults": consul,
                "suspicion_mult": opts.cfg.suspicion_mult,
            },
            "sizes": results.iter().map(size_json).collect::<Vec<_>>(),
            "targets": targets.iter().map(TargetLine::json).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn measure_size(opts: &Opts, n: usize) -> SizeResult {
    let wall = Instant::now();
    let mut res = SizeResult {
        n,
        kills: Vec::new(),
        events: Vec::new(),
        traffic: SimTraffic::default(),
        traffic_secs: 0.0,
        starves: Vec::new(),
        wall: Duration::ZERO,
    };
    for c in 0..opts.clusters {
        let seed = opts.seed * 1_000_003 + (n as u64) * 1_000 + c as u64;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let mut net = cluster(n, seed, opts);
        // Quiet window: nothing happens but probes and push/pulls.
        let before = net.traffic;
        net.run_for(opts.steady);
        add_traffic(&mut res.traffic, net.traffic, before);
        res.traffic_secs += opts.steady.as_secs_f64() * n as f64;
        for t in 0..opts.trials {
            res.events.push(event_trial(&mut net, &mut rng, t));
            res.kills.push(kill_trial(&mut net, &mut rng, &opts.cfg));
        }
        println!(
            "  {n} members, cluster {}/{}: done at {:.0} s wall",
            c + 1,
            opts.clusters,
            wall.elapsed().as_secs_f64()
        );
    }
    let modes = std::iter::repeat_n(Starvation::Bursts, opts.starve)
        .chain(std::iter::repeat_n(Starvation::MidProbe, opts.starve))
        .chain([Starvation::Stall]);
    for (k, mode) in modes.enumerate() {
        let seed = opts.seed * 1_000_003 + (n as u64) * 1_000 + 500 + k as u64;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let mut net = cluster(n, seed, opts);
        let s = starve(&mut net, &mut rng, mode);
        println!(
            "  {n} members, starvation ({}): {} false failure(s), done at {:.0} s wall",
            mode.label(),
            s.false_failures,
            wall.elapsed().as_secs_f64()
        );
        res.starves.push(s);
    }
    res.wall = wall.elapsed();
    res
}

fn add_traffic(sum: &mut SimTraffic, after: SimTraffic, before: SimTraffic) {
    sum.datagrams += after.datagrams - before.datagrams;
    sum.datagram_bytes += after.datagram_bytes - before.datagram_bytes;
    sum.streams += after.streams - before.streams;
    sum.stream_bytes += after.stream_bytes - before.stream_bytes;
    sum.recv_buffer_overflows += after.recv_buffer_overflows - before.recv_buffer_overflows;
}

fn name(i: usize) -> String {
    format!("node-{i:03}")
}

/// `n` members joined through the first three (as agents with a `retry_join`
/// list of servers do), one every 100 ms, then left to converge and settle.
fn cluster(n: usize, seed: u64, opts: &Opts) -> SimNet {
    let mut net = SimNet::new(seed, opts.latency);
    for i in 0..n {
        net.add_node(&name(i), opts.cfg.clone());
    }
    for i in 1..n {
        net.join(i, if i < 3 { 0 } else { i % 3 });
        net.run_for(Duration::from_millis(100));
    }
    let names: Vec<String> = (0..n).map(name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    if !net.run_until(TRIAL_LIMIT, |net| net.all_see(&names, NodeState::Alive)) {
        println!("  warning: {n} members (seed {seed}) did not converge");
    }
    settle(&mut net);
    net
}

/// Run until no member has a broadcast left to send, plus a little: the next
/// trial then starts from a quiet cluster.
fn settle(net: &mut SimNet) {
    net.run_until(TRIAL_LIMIT, |net| {
        net.nodes
            .iter()
            .filter(|x| x.up)
            .all(|x| x.core.pending_broadcasts() == 0)
    });
    net.run_for(Duration::from_secs(2));
}

fn random_phase(net: &mut SimNet, rng: &mut StdRng) {
    net.run_for(Duration::from_micros(rng.gen_range(0..1_000_000)));
}

fn kill_trial(net: &mut SimNet, rng: &mut StdRng, cfg: &CoreConfig) -> Kill {
    random_phase(net, rng);
    let victim = rng.gen_range(0..net.nodes.len());
    let vname = name(victim);
    let t0 = net.now();
    net.stop(victim);
    let mut first_suspect = None;
    let limit = t0 + TRIAL_LIMIT;
    loop {
        let up = || net.nodes.iter().filter(|x| x.up);
        if first_suspect.is_none()
            && up().any(|x| {
                matches!(
                    x.state_of(&vname),
                    Some(NodeState::Suspect | NodeState::Dead)
                )
            })
        {
            first_suspect = Some(net.now() - t0);
        }
        if up().all(|x| x.state_of(&vname) == Some(NodeState::Dead)) || net.now() >= limit {
            break;
        }
        net.run_for(POLL);
    }
    let failed: Vec<Option<Instant>> = net
        .nodes
        .iter()
        .filter(|x| x.up)
        .map(|x| {
            x.events.iter().find_map(|(at, e)| match e {
                Event::Member {
                    kind: MemberEventKind::Failed,
                    member,
                } if *at >= t0 && member.name == vname => Some(*at),
                _ => None,
            })
        })
        .collect();
    let first_failed = failed.iter().flatten().min().map(|t| *t - t0);
    let all_failed = failed
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max())
        .map(|t| t - t0);
    // Bring it back (a restarted agent rejoins; its old incarnation is refuted)
    // and wait for everyone to see everyone alive again.
    net.restart(victim, cfg.clone());
    let via = (victim + 1 + rng.gen_range(0..net.nodes.len() - 1)) % net.nodes.len();
    net.join(victim, via);
    let names: Vec<String> = (0..net.nodes.len()).map(name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    net.run_until(TRIAL_LIMIT, |net| net.all_see(&names, NodeState::Alive));
    settle(net);
    Kill {
        first_suspect,
        first_failed,
        all_failed,
    }
}

/// Time until every member delivered one user event; `None` if some did not
/// within [`TRIAL_LIMIT`].
fn event_trial(net: &mut SimNet, rng: &mut StdRng, trial: usize) -> Option<Duration> {
    random_phase(net, rng);
    let from = rng.gen_range(0..net.nodes.len());
    let payload = format!("trial-{trial}").into_bytes();
    let t0 = net.now();
    net.call(from, |core, now| {
        core.user_event("bench", &payload, false, now)
            .unwrap_or_default()
    });
    let delivered = |x: &tribune_gossip::sim::SimNode| {
        x.events.iter().rev().find_map(|(at, e)| match e {
            Event::User(u) if u.payload == payload => Some(*at),
            _ => None,
        })
    };
    let all = net.run_until(TRIAL_LIMIT, |net| {
        net.nodes.iter().all(|x| delivered(x).is_some())
    });
    let last = net.nodes.iter().filter_map(delivered).max();
    settle(net);
    last.filter(|_| all).map(|t| t - t0)
}

/// Run until member `s` sends a ping (then its ack is at most one latency
/// away), for at most a second of running.
fn until_ping_sent(net: &mut SimNet, s: usize) {
    let limit = net.now() + Duration::from_secs(1);
    net.sent.clear();
    net.record = true;
    while net.now() < limit {
        net.run_for(Duration::from_micros(50));
        let pinged = net
            .sent
            .iter()
            .any(|p| p.from == s && matches!(p.msgs.first(), Some(Message::Ping(_))));
        net.sent.clear();
        if pinged {
            break;
        }
    }
    net.record = false;
}

fn starve(net: &mut SimNet, rng: &mut StdRng, mode: Starvation) -> Starve {
    let n = net.nodes.len();
    let s = rng.gen_range(0..n);
    let sname = name(s);
    let marks: Vec<usize> = net.nodes.iter().map(|x| x.events.len()).collect();
    let stats_before: Vec<_> = net.nodes.iter().map(|x| x.core.stats()).collect();
    let overflow_before = net.traffic.recv_buffer_overflows;
    random_phase(net, rng);
    let mut stopped = Duration::ZERO;
    let mut bursts = 0;
    while stopped < STARVE_TOTAL {
        let d = if mode == Starvation::Stall {
            STARVE_TOTAL
        } else {
            Duration::from_millis(rng.gen_range(3_000..=8_000)).min(STARVE_TOTAL - stopped)
        };
        if mode == Starvation::MidProbe {
            until_ping_sent(net, s);
        }
        net.pause(s);
        net.run_for(d);
        net.resume(s);
        stopped += d;
        bursts += 1;
        net.run_for(Duration::from_millis(rng.gen_range(500..=1_000)));
    }
    net.run_for(STARVE_AFTER);
    let mut false_failures = 0;
    let mut falsely: Vec<&str> = Vec::new();
    let mut starved_failed_by = 0;
    for (i, x) in net.nodes.iter().enumerate() {
        let mut failed_s = false;
        for (_, e) in &x.events[marks[i]..] {
            if let Event::Member {
                kind: MemberEventKind::Failed,
                member,
            } = e
            {
                if member.name == sname {
                    failed_s = true;
                } else {
                    false_failures += 1;
                    if !falsely.contains(&member.name.as_str()) {
                        falsely.push(&member.name);
                    }
                }
            }
        }
        starved_failed_by += usize::from(failed_s);
    }
    let stats_after: Vec<_> = net.nodes.iter().map(|x| x.core.stats()).collect();
    let healthy_refutations = (0..n)
        .filter(|&i| i != s)
        .map(|i| stats_after[i].refutations - stats_before[i].refutations)
        .sum();
    Starve {
        mode,
        bursts,
        false_failures,
        falsely_failed: falsely.len(),
        starved_failed_by,
        starved_alive_at_end: net.all_see(&[sname.as_str()], NodeState::Alive),
        starved_accusations: stats_after[s].suspicions_raised - stats_before[s].suspicions_raised,
        starved_refutations: stats_after[s].refutations - stats_before[s].refutations,
        healthy_refutations,
        overflows: net.traffic.recv_buffer_overflows - overflow_before,
    }
}

/// Nearest-rank percentile of the measured values; `None` when any trial
/// missed (a miss is slower than every measurement, so it is the percentile's
/// answer as soon as it reaches the rank) or there are none.
fn pct(v: &[Option<Duration>], p: f64) -> Option<Duration> {
    let mut got: Vec<Duration> = v.iter().flatten().copied().collect();
    if got.is_empty() {
        return None;
    }
    got.sort();
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    got.get(rank - 1).copied()
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn within(v: &[Option<Duration>], limit: Duration) -> usize {
    v.iter().flatten().filter(|d| **d <= limit).count()
}

fn misses(v: &[Option<Duration>]) -> usize {
    v.iter().filter(|x| x.is_none()).count()
}

/// Bytes per member per second: UDP payload, push/pull, and the UDP total with
/// AES-GCM sealing and UDP/IPv4 headers (28 bytes) added per datagram.
fn rates(r: &SizeResult) -> (f64, f64, f64, f64) {
    let per = |x: u64| x as f64 / r.traffic_secs.max(1e-9);
    let t = &r.traffic;
    let wire = t.datagram_bytes + t.datagrams * (SEAL_OVERHEAD as u64 + 28);
    (
        per(t.datagrams),
        per(t.datagram_bytes),
        per(t.stream_bytes),
        per(wire),
    )
}

fn tables(results: &[SizeResult]) -> String {
    let mut out = String::new();
    out.push_str(
        "Detection (s from the stop), broadcast (s from firing) and steady-state traffic:\n\n",
    );
    out.push_str("| members | kills | first suspect p50 | first failed p50 | all failed p50 | all failed p99 | all failed max | missed | events | all delivered p50 | p99 | max | within 1.5 s | missed | datagrams/member/s | UDP B/member/s | push/pull B/member/s | UDP on the wire B/member/s |\n");
    out.push_str("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for r in results {
        let sus: Vec<_> = r.kills.iter().map(|k| k.first_suspect).collect();
        let first: Vec<_> = r.kills.iter().map(|k| k.first_failed).collect();
        let all: Vec<_> = r.kills.iter().map(|k| k.all_failed).collect();
        let (dg, udp, tcp, wire) = rates(r);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {:.2} | {:.0} | {:.0} | {:.0} |",
            r.n,
            r.kills.len(),
            secs(pct(&sus, 0.5)),
            secs(pct(&first, 0.5)),
            secs(pct(&all, 0.5)),
            secs(pct(&all, 0.99)),
            secs(pct(&all, 1.0)),
            misses(&all),
            r.events.len(),
            secs(pct(&r.events, 0.5)),
            secs(pct(&r.events, 0.99)),
            secs(pct(&r.events, 1.0)),
            within(&r.events, BROADCAST_GOAL),
            r.events.len(),
            misses(&r.events),
            dg,
            udp,
            tcp,
            wire,
        );
    }
    out.push_str("\nStarvation (one member paused as by SIGSTOP for 30 s in all, then 90 s of normal running):\n\n");
    out.push_str("| members | mode | pauses | false failures (healthy members marked failed) | healthy members affected | starved member marked failed by | starved alive everywhere at the end | accusations by the starved member | its refutations | refutations by healthy members | datagrams lost to its full buffer |\n");
    out.push_str("|--:|---|--:|--:|--:|--:|---|--:|--:|--:|--:|\n");
    for r in results {
        for s in &r.starves {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.n,
                s.mode.label(),
                s.bursts,
                s.false_failures,
                s.falsely_failed,
                s.starved_failed_by,
                if s.starved_alive_at_end { "yes" } else { "no" },
                s.starved_accusations,
                s.starved_refutations,
                s.healthy_refutations,
                s.overflows,
            );
        }
    }
    out.push_str("\nWall time per size: ");
    for r in results {
        let _ = write!(out, "{} members {:.0} s; ", r.n, r.wall.as_secs_f64());
    }
    out.push('\n');
    out
}

fn targets(results: &[SizeResult]) -> Vec<TargetLine> {
    let at = results.iter().find(|r| r.n == TARGET_SIZE);
    let all: Vec<_> = at
        .map(|r| r.kills.iter().map(|k| k.all_failed).collect())
        .unwrap_or_default();
    let events: &[Option<Duration>] = at.map_or(&[], |r| &r.events);
    let s = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let p50 = s(pct(&all, 0.5));
    let p99 = s(pct(&all, 0.99));
    let bc = s(pct(events, 0.99));
    let share = (!events.is_empty())
        .then(|| 100.0 * within(events, BROADCAST_GOAL) as f64 / events.len() as f64);
    let false_failures: usize = results
        .iter()
        .flat_map(|r| &r.starves)
        .map(|x| x.false_failures)
        .sum();
    let starved = results.iter().any(|r| !r.starves.is_empty());
    let line = |name: String, measured: Option<f64>, unit, goal: String, met| TargetLine {
        name,
        measured,
        unit,
        goal,
        met,
        disturbed: false,
        reference: false,
    };
    vec![
        line(
            format!("detection by all, p50, {TARGET_SIZE} members"),
            p50,
            "s",
            format!("<= {} s", DETECT_P50_GOAL.as_secs()),
            p50.map(|v| v <= DETECT_P50_GOAL.as_secs_f64()),
        ),
        line(
            format!("detection by all, p99, {TARGET_SIZE} members"),
            p99,
            "s",
            format!("<= {} s", DETECT_P99_GOAL.as_secs()),
            p99.map(|v| v <= DETECT_P99_GOAL.as_secs_f64()),
        ),
        line(
            format!("broadcast to {TARGET_SIZE}/{TARGET_SIZE}, p99"),
            bc,
            "s",
            format!("<= {} s", BROADCAST_GOAL.as_secs_f64()),
            bc.map(|v| v <= BROADCAST_GOAL.as_secs_f64()),
        ),
        TargetLine {
            reference: true,
            ..line(
                format!("  events reaching {TARGET_SIZE}/{TARGET_SIZE} within 1.5 s"),
                share,
                "%",
                String::new(),
                None,
            )
        },
        line(
            "false failures under starvation (all sizes, all runs)".into(),
            starved.then_some(false_failures as f64),
            "",
            "= 0".into(),
            starved.then_some(false_failures == 0),
        ),
    ]
}

fn size_json(r: &SizeResult) -> Value {
    let d = |v: Option<Duration>| v.map(|d| d.as_secs_f64());
    let (dg, udp, tcp, wire) = rates(r);
    json!({
        "members": r.n,
        "kills": r.kills.iter().map(|k| json!({
            "first_suspect_s": d(k.first_suspect),
            "first_failed_s": d(k.first_failed),
            "all_failed_s": d(k.all_failed),
        })).collect::<Vec<_>>(),
        "events_all_delivered_s": r.events.iter().map(|e| d(*e)).collect::<Vec<_>>(),
        "traffic_per_member_per_sec": {
            "datagrams": dg,
            "udp_bytes": udp,
            "push_pull_bytes": tcp,
            "udp_wire_bytes_sealed_with_headers": wire,
        },
        "starvation": r.starves.iter().map(|s| json!({
            "mode": s.mode.label(),
            "pauses": s.bursts,
            "false_failures": s.false_failures,
            "healthy_members_affected": s.falsely_failed,
            "starved_marked_failed_by": s.starved_failed_by,
            "starved_alive_at_end": s.starved_alive_at_end,
            "starved_accusations": s.starved_accusations,
            "starved_refutations": s.starved_refutations,
            "healthy_refutations": s.healthy_refutations,
            "recv_buffer_overflows": s.overflows,
        })).collect::<Vec<_>>(),
        "wall_s": r.wall.as_secs_f64(),
    })
}
