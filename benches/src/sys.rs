//! What the machine was doing during a measurement: CPU time of the processes
//! involved, whole-machine CPU use, and the block device's write and flush counts
//! (from `/proc`). These say where time went without a profiler: a workload whose
//! processes add up to ~2 cores is CPU-bound, one with many flushes per second and
//! idle CPUs is waiting on the disk.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

/// Linux reports `/proc/<pid>/stat` times in USER_HZ, which is 100 on every
/// architecture the kernel's ABI allows user space to see.
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds consumed so far by process `pid` (all its threads).
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; everything after the last ')'
    // is space separated, starting with field 3 (state).
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// CPU seconds of every thread of `pid`, by thread id, with the thread's name.
fn thread_cpu_secs(pid: u32) -> Vec<(u32, String, f64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
            continue;
        };
        let name = text[open + 1..close].to_owned();
        let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
        let secs = fields
            .get(11)
            .zip(fields.get(12))
            .and_then(|(u, s)| Some(u.parse::<f64>().ok()? + s.parse::<f64>().ok()?))
            .map(|t| t / USER_HZ);
        if let Some(secs) = secs {
            out.push((tid, name, secs));
        }
    }
    out
}

/// Busy and total jiffies of the whole machine (first line of `/proc/stat`).
fn machine_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = nums.iter().take(8).sum();
    // idle + iowait: a CPU waiting for a flush is not doing work.
    let idle = nums.get(3).copied().unwrap_or(0) + nums.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Completed writes and flushes of one block device (`/proc/diskstats`).
#[derive(Clone, Copy, Default)]
struct DiskCounts {
    writes: u64,
    flushes: u64,
}

/// The block device holding a path, as its `/proc/diskstats` name.
#[derive(Clone, Debug)]
pub struct Disk {
    /// Device name (`vda`, `nvme0n1p2`, ...).
    pub name: String,
}

impl Disk {
    /// The device of the filesystem that holds `path`.
    pub fn of(path: &Path) -> Result<Disk> {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(path)
            .with_context(|| format!("stat {}", path.display()))?
            .dev();
        // glibc's gnu_dev_major/minor encoding of st_dev.
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        let text = std::fs::read_to_string("/proc/diskstats").context("reading /proc/diskstats")?;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 3 && f[0] == major.to_string() && f[1] == minor.to_string() {
                return Ok(Disk {
                    name: f[2].to_owned(),
                });
            }
        }
        anyhow::bail!("no /proc/diskstats entry for device {major}:{minor}")
    }

    fn counts(&self) -> DiskCounts {
        let Ok(text) = std::fs::read_to_string("/proc/diskstats") else {
            return DiskCounts::default();
        };
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(2) == Some(&self.name.as_str()) {
                let n = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
                // Field 8 (1-based: 3 + 5) is writes completed; field 18 (kernel
                // >= 5.5) is flush requests completed.
                return DiskCounts {
                    writes: n(7),
                    flushes: n(17),
                };
            }
        }
        DiskCounts::default()
    }
}

/// A point-in-time reading of everything [`Usage`] is computed from.
pub struct Sample {
    at: Instant,
    procs: Vec<Option<f64>>,
    threads: Vec<(u32, String, f64)>,
    own: Option<f64>,
    machine: Option<(u64, u64)>,
    disk: DiskCounts,
}

/// Resource use between two [`Sample`]s.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// CPU of the server process(es), in cores (1.0 = one core fully busy).
    pub server_cores: Option<f64>,
    /// CPU of the load generator, in cores: this process plus any external
    /// client processes given to [`Sampler::with_clients`].
    pub client_cores: Option<f64>,
    /// The server's busiest thread and its CPU, in cores: a thread near 1.0
    /// is a serial bottleneck whatever the process total says.
    pub hottest_thread: Option<(String, f64)>,
    /// Whole-machine busy fraction (0..=1 of all cores).
    pub machine_busy: Option<f64>,
    /// CPU used by everything else (other processes, kernel threads doing I/O
    /// completion), in cores: large values mean the run was disturbed.
    pub other_cores: Option<f64>,
    /// Device write requests per second.
    pub disk_writes_per_sec: f64,
    /// Device flush requests per second.
    pub disk_flushes_per_sec: f64,
}

/// Takes samples of the given server processes, this process, the machine and a disk.
#[derive(Clone)]
pub struct Sampler {
    pids: Vec<u32>,
    clients: Vec<u32>,
    disk: Disk,
}

impl Sampler {
    /// `pids`: the server processes whose CPU counts as "server".
    pub fn new(pids: Vec<u32>, disk: Disk) -> Sampler {
        Sampler {
            pids,
            clients: Vec::new(),
            disk,
        }
    }

    /// Also count `pids` as load generator: an external client (dnsperf) whose
    /// CPU would otherwise show up as "other" and mark every row disturbed.
    pub fn with_clients(mut self, pids: Vec<u32>) -> Sampler {
        self.clients = pids;
        self
    }

    /// Read the counters now.
    pub fn sample(&self) -> Sample {
        Sample {
            at: Instant::now(),
            procs: self.pids.iter().map(|p| process_cpu_secs(*p)).collect(),
            threads: self.pids.iter().flat_map(|p| thread_cpu_secs(*p)).collect(),
            own: std::iter::once(std::process::id())
                .chain(self.clients.iter().copied())
                .map(process_cpu_secs)
                .sum(),
            machine: machine_jiffies(),
            disk: self.disk.counts(),
        }
    }

    /// What happened between `a` and `b`.
    pub fn usage(&self, a: &Sample, b: &Sample) -> Usage {
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        let server_cores = if self.pids.is_empty() {
            None
        } else {
            let mut total = 0.0;
            let mut ok = true;
            for (x, y) in a.procs.iter().zip(&b.procs) {
                match (x, y) {
                    (Some(x), Some(y)) => total += y - x,
                    _ => ok = false,
                }
            }
            ok.then_some(total / secs)
        };
        let client_cores = match (a.own, b.own) {
            (Some(x), Some(y)) => Some((y - x) / secs),
            _ => None,
        };
        let mut hottest_thread: Option<(String, f64)> = None;
        for (tid, name, after) in &b.threads {
            let before = a
                .threads
                .iter()
                .find(|(t, _, _)| t == tid)
                .map_or(0.0, |(_, _, s)| *s);
            let cores = (after - before) / secs;
            if hottest_thread.as_ref().is_none_or(|(_, c)| cores > *c) {
                hottest_thread = Some((name.clone(), cores));
            }
        }
        let machine_busy = match (a.machine, b.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some((b1 - b0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let other_cores = machine_busy.map(|m| {
            (m * cores - server_cores.unwrap_or(0.0) - client_cores.unwrap_or(0.0)).max(0.0)
        });
        Usage {
            server_cores,
            client_cores,
            hottest_thread,
            machine_busy,
            other_cores,
            disk_writes_per_sec: b.disk.writes.saturating_sub(a.disk.writes) as f64 / secs,
            disk_flushes_per_sec: b.disk.flushes.saturating_sub(a.disk.flushes) as f64 / secs,
        }
    }
}

/// The benchmark's own directory under `data_root` (created if missing), removed when
/// the returned guard drops. Callers drop it last, after every process they started
/// inside it was killed: those live inside the future that `block_on` drops first.
pub fn bench_dir(data_root: &Path) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(data_root)
        .with_context(|| format!("creating {}", data_root.display()))?;
    tempfile::Builder::new()
        .prefix("tribune-bench-")
        .tempdir_in(data_root)
        .with_context(|| format!("creating a temp dir in {}", data_root.display()))
}

/// The setting a benchmark runs in, printed before it starts and kept for the
/// JSON record.
pub struct Env {
    /// The block device under the data directories.
    pub disk: Disk,
    /// [`describe_machine`].
    pub machine: String,
    /// [`describe_disk`].
    pub disk_desc: String,
    /// Whole-machine busy fraction just before the run (see [`background_load`]).
    pub background: Option<f64>,
}

impl Env {
    /// Describe the machine and the disk holding `dir`, print both, and measure
    /// the background load for 2 s.
    pub fn announce(dir: &Path) -> Env {
        let disk = Disk::of(dir).unwrap_or_else(|e| {
            println!("note: no block-device counters for this disk: {e:#}");
            Disk {
                name: "unknown".into(),
            }
        });
        let machine = describe_machine();
        let disk_desc = describe_disk(dir, &disk);
        println!("machine: {machine}");
        println!("disk:    {disk_desc}");
        if disk_desc.contains("(tmpfs") || disk_desc.contains("(ramfs") {
            println!("WARNING: {} is in memory: fdatasync is free there, durable-write figures mean nothing (use --data-root)", dir.display());
        }
        // Anything else running (a build, another test suite) takes CPU from the
        // servers and the client alike; say so rather than publish skewed figures.
        let background = background_load(2.0);
        if let Some(b) = background {
            println!(
                "background CPU load before the run: {:.0}% of all cores",
                b * 100.0
            );
            if b > 0.10 {
                println!("WARNING: the machine is not idle; figures will be lower and noisier than they should be");
            }
        }
        Env {
            disk,
            machine,
            disk_desc,
            background,
        }
    }
}

/// Whole-machine busy fraction over `secs` seconds, with nothing of ours running:
/// anything else on the machine competes with the servers for the same cores.
pub fn background_load(secs: f64) -> Option<f64> {
    let a = machine_jiffies()?;
    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    let b = machine_jiffies()?;
    (b.1 > a.1).then(|| (b.0 - a.0) as f64 / (b.1 - a.1) as f64)
}

/// A memory field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, ...) in MiB.
pub fn proc_status_mib(pid: u32, field: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = text
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// A free TCP port on 127.0.0.1. There is a window between releasing it and the
/// server binding it; on a benchmark machine nothing else is grabbing ports.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// One line describing the machine: CPU model, core count, memory, kernel.
pub fn describe_machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores ({model}), {mem_gib:.0} GiB RAM, Linux {kernel}")
}

/// One line describing the disk behind `path`: device, filesystem, write cache.
pub fn describe_disk(path: &Path, disk: &Disk) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    // The longest mount point that prefixes the (canonical) path.
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut best: Option<(usize, String, String, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        if canon.starts_with(f[1]) && best.as_ref().is_none_or(|b| f[1].len() > b.0) {
            best = Some((
                f[1].len(),
                f[1].to_owned(),
                f[2].to_owned(),
                f[3].to_owned(),
            ));
        }
    }
    let sys = |file: &str| {
        std::fs::read_to_string(format!("/sys/block/{}/queue/{file}", disk.name))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into())
    };
    let (mount, fs, opts) = best
        .map(|b| (b.1, b.2, b.3))
        .unwrap_or_else(|| ("?".into(), "?".into(), "?".into()));
    format!(
        "/dev/{} mounted on {mount} ({fs}, {opts}), rotational={}, write_cache={}",
        disk.name,
        sys("rotational"),
        sys("write_cache")
    )
}

/// A CPU quota on some processes, through a cgroup of its own (v2 `cpu.max` when the
/// unified hierarchy has the cpu controller, else v1 `cpu.cfs_quota_us`). Dropping it
/// moves the processes back to the root group and removes the group.
pub struct CpuQuota {
    dir: PathBuf,
    root: PathBuf,
    pids: Vec<u32>,
}

impl CpuQuota {
    /// Caps `pids` (with all their threads) at `cores` of one CPU, in a group named
    /// `name`.
    pub fn new(name: &str, cores: f64, pids: &[u32]) -> Result<CpuQuota> {
        const PERIOD_US: u64 = 100_000;
        let quota_us = (cores * PERIOD_US as f64).round() as u64;
        let v2 = Path::new("/sys/fs/cgroup/unified");
        let v2_root = if v2.join("cgroup.controllers").exists() {
            v2.to_path_buf()
        } else {
            PathBuf::from("/sys/fs/cgroup")
        };
        let v2_has_cpu = std::fs::read_to_string(v2_root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"));
        let (root, dir) = if v2_has_cpu {
            let dir = v2_root.join(name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cpu.max"), format!("{quota_us} {PERIOD_US}"))?;
            (v2_root, dir)
        } else {
            let root = PathBuf::from("/sys/fs/cgroup/cpu");
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).with_context(|| {
                format!("creating {} (needs root and cgroup v1 cpu)", dir.display())
            })?;
            std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota_us.to_string())?;
            (root, dir)
        };
        let quota = CpuQuota {
            dir,
            root,
            pids: pids.to_vec(),
        };
        for pid in pids {
            std::fs::write(quota.dir.join("cgroup.procs"), pid.to_string())
                .with_context(|| format!("moving process {pid} into {}", quota.dir.display()))?;
        }
        Ok(quota)
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = std::fs::write(self.root.join("cgroup.procs"), pid.to_string());
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
