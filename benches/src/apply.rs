//! `apply`: the cost of applying KV writes to the state store, as the raft
//! thread does on every server, without raft, disk or network.
//!
//! Preloads `--keys` rows, then applies `--writes` KV sets to new keys (or, with
//! `--overwrite`, from the second round on, the first round's keys again) in
//! batches of `--batch`, each between `begin_batch` and `end_batch` as one raft
//! cycle applies them (nothing reads, so batches stay unpublished: the
//! write-only case). Keys follow the cluster benchmark's pattern: `--clients`
//! clients (64), each writing its own ascending sequence, so consecutive writes
//! land in that many regions of the key space. Prints the CPU time per write;
//! compare builds (or commits) with the same arguments. Ends with the time two
//! snapshots of the resulting state take to serialise into memory, and one
//! written into a file as a server's raft snapshots are, with the process's
//! resident memory before and after each.

use std::time::Instant;

use anyhow::{Context, Result};
use tribune_state::{Command, StateStore};
use tribune_types::model::ops::WriteRequest;

pub const USAGE: &str = "\
tribune-benches apply [options]
  --keys N      rows loaded before measuring (default 400000)
  --writes N    KV sets measured (default 400000)
  --batch N     writes per published batch (default 8)
  --clients N   key sequences the writes interleave, as clients of the cluster
                benchmark (default 64)
  --rounds N    repeat the measurement, one line per round (default 3)
  --overwrite   rounds after the first write the first round's keys again
                (as the cluster benchmark's rounds do) instead of new ones
";

pub fn run(args: &[String]) -> Result<()> {
    let (mut keys, mut writes, mut batch, mut rounds) = (400_000u64, 400_000u64, 8u64, 3u32);
    let mut clients = 64u64;
    let mut overwrite = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--overwrite" {
            overwrite = true;
            continue;
        }
        let v = it
            .next()
            .with_context(|| format!("{a} needs a value\n{USAGE}"))?;
        match a.as_str() {
            "--keys" => keys = v.parse()?,
            "--writes" => writes = v.parse()?,
            "--batch" => batch = v.parse::<u64>()?.max(1),
            "--rounds" => rounds = v.parse()?,
            "--clients" => clients = v.parse::<u64>()?.max(1),
            other => anyhow::bail!("unknown option {other}\n{USAGE}"),
        }
    }
    let store = StateStore::new();
    let mut index = 0u64;
    let mut seq = vec![0u64; clients as usize];
    let apply = |n: u64, batch: u64, index: &mut u64, seq: &mut [u64]| {
        for i in 0..n {
            if i % batch == 0 {
                store.begin_batch();
            }
            *index += 1;
            let client = (i % clients) as usize;
            seq[client] += 1;
            let cmd = Command::Request(WriteRequest::kv_set(
                format!("bench/put/c{client:03}/{:010}", seq[client]),
                vec![7; 256],
            ));
            let _ = store.apply(*index, &cmd);
            if i % batch == batch - 1 || i == n - 1 {
                store.end_batch();
            }
        }
    };
    apply(keys, 1024, &mut index, &mut seq);
    println!(
        "apply: {keys} rows preloaded; {writes} KV sets in batches of {batch}, {clients} key sequences"
    );
    let first_round = seq.clone();
    for round in 1..=rounds {
        if overwrite {
            // Every round writes the keys of the first again, as the cluster
            // benchmark's rounds do.
            seq.clone_from(&first_round);
        }
        let start = Instant::now();
        apply(writes, batch, &mut index, &mut seq);
        let per = start.elapsed().as_nanos() as f64 / writes as f64;
        println!("  round {round}: {per:.0} ns per write");
    }
    let rows = keys + writes * u64::from(rounds);
    // As a server's `raft-snapshot` thread writes: into a file as the bytes
    // are serialised, no buffer the size of the state (the thread then also
    // reads the file back for its checksum and syncs it). First, while no
    // earlier snapshot's buffer has raised the resident memory.
    let file = tempfile::tempfile().context("temporary file")?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let rss = resident_mib();
    let start = Instant::now();
    let len = store.snapshot_job().write_to(&mut out)?;
    std::io::Write::flush(&mut out)?;
    println!(
        "snapshot (to a file): {rows} rows written in {:.0} ms ({:.1} MiB), resident {rss:.0} -> {:.0} MiB",
        start.elapsed().as_secs_f64() * 1e3,
        len as f64 / f64::from(1 << 20),
        resident_mib(),
    );
    // Then into memory, as the synchronous path (raft snapshots outside a
    // server's background thread) does.
    // Twice: later snapshots size their buffer from the one before.
    for which in ["first", "next"] {
        let rss = resident_mib();
        let start = Instant::now();
        let bytes = store.snapshot();
        println!(
            "snapshot ({which}): {rows} rows serialised in {:.0} ms ({:.1} MiB), resident {rss:.0} -> {:.0} MiB",
            start.elapsed().as_secs_f64() * 1e3,
            bytes.len() as f64 / f64::from(1 << 20),
            resident_mib(),
        );
    }
    Ok(())
}

/// This process's resident memory, in MiB; 0 where `/proc` is absent.
fn resident_mib() -> f64 {
    crate::checks::rss_mib(std::process::id()).unwrap_or(0.0)
}
