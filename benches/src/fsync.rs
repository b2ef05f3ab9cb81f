//! The disk's floor: a loop of "write 256 bytes, `fdatasync`" on the filesystem
//! that holds the servers' data directories.
//!
//! Two variants, because ext4 makes them cost different amounts:
//! - `append`: each write extends the file, so `fdatasync` must also commit the new
//!   size through the journal. This is what a write-ahead log that appends (RocksDB's
//!   WAL, which Tribune's raft log goes through) pays per synced batch.
//! - `overwrite`: each write lands on already-allocated, already-written blocks of a
//!   preallocated file, so `fdatasync` only flushes data: the cheapest durable
//!   write this disk can do.
//!
//! The single-client PUT target is stated against one `append` fdatasync.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::driver::{Measured, Plan};
use crate::sys::Sampler;

const RECORD: usize = 256;
/// Size of the preallocated file for `overwrite`: large enough that the loop
/// cycles over many blocks, small enough to write quickly.
const PREALLOC: u64 = 16 << 20;

/// Which fdatasync loop to run.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Append to a growing file.
    Append,
    /// Overwrite blocks of a fully written file.
    Overwrite,
}

/// Run the loop in `dir` (blocking; call from a blocking-capable thread).
pub fn run(dir: &Path, mode: Mode, plan: Plan, sampler: &Sampler) -> Result<Measured> {
    let path = dir.join(match mode {
        Mode::Append => "fsync-append.dat",
        Mode::Overwrite => "fsync-overwrite.dat",
    });
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    if let Mode::Overwrite = mode {
        prefill(&mut file)?;
    }
    let record = [0x5a_u8; RECORD];
    let start = Instant::now();
    let measure_start = start + plan.warmup;
    let end = measure_start + plan.measure;
    let mut samples = Vec::with_capacity(1 << 16);
    let mut before = None;
    let mut offset = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        if before.is_none() && t0 >= measure_start {
            before = Some(sampler.sample());
        }
        match mode {
            Mode::Append => file.write_all(&record)?,
            Mode::Overwrite => {
                file.write_all_at(&record, offset)?;
                offset = (offset + 4096) % PREALLOC;
            }
        }
        file.sync_data()?; // fdatasync(2) on Linux
        if t0 >= measure_start {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    let after = sampler.sample();
    let usage = match before {
        Some(b) => sampler.usage(&b, &after),
        None => Default::default(),
    };
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(Measured::from_samples(
        samples,
        plan.measure.as_secs_f64(),
        0,
        None,
        usage,
    ))
}

/// Write the whole file and sync it, so later overwrites touch no metadata.
fn prefill(file: &mut File) -> Result<()> {
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..(PREALLOC / chunk.len() as u64) {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    Ok(())
}
