//! House rules, checked by `cargo xtask tidy` and by `cargo test` (the `tidy` test):
//!
//! 1. every Rust source file starts with a `//!` module doc;
//! 2. no library crate (`crates/*`) depends on `anyhow`;
//! 3. the internal dependency edges of every crate equal the DAG table in
//!    `ARCHITECTURE.md` (the block between `<!-- dag -->` markers, one line
//!    `crate: dep, dep` per crate).

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Returns the list of violations (empty = tidy).
pub fn check(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for dir in ["crates", "bins", "xtask", "benches"] {
        module_docs(&root.join(dir), root, &mut problems)?;
    }
    let actual = internal_deps(root, &mut problems)?;
    let documented = documented_dag(root)?;
    if actual != documented {
        for (krate, deps) in &actual {
            match documented.get(krate) {
                None => problems.push(format!(
                    "ARCHITECTURE.md: crate `{krate}` missing from the DAG table"
                )),
                Some(d) if d != deps => problems.push(format!(
                    "ARCHITECTURE.md: `{krate}` depends on {deps:?} but the DAG table says {d:?}"
                )),
                _ => {}
            }
        }
        for krate in documented.keys().filter(|k| !actual.contains_key(*k)) {
            problems.push(format!(
                "ARCHITECTURE.md: DAG table lists unknown crate `{krate}`"
            ));
        }
    }
    Ok(problems)
}

fn module_docs(dir: &Path, root: &Path, problems: &mut Vec<String>) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                module_docs(&path, root, problems)?;
            }
        } else if name.ends_with(".rs") {
            let text = fs::read_to_string(&path)?;
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                problems.push(format!("{}: missing `//!` module doc", rel.display()));
            }
        }
    }
    Ok(())
}

/// Internal (`tribune-*`) normal dependencies per library crate, plus the anyhow rule.
fn internal_deps(
    root: &Path,
    problems: &mut Vec<String>,
) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(root.join("crates"))? {
        let dir = entry?.path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned();
        let mut deps = BTreeSet::new();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.to_owned();
                continue;
            }
            if section != "[dependencies]" {
                continue;
            }
            let key = line.split(['.', '=', ' ']).next().unwrap_or("");
            if key == "anyhow" {
                problems.push(format!(
                    "crates/{name}: library crates must not depend on anyhow"
                ));
            }
            if let Some(dep) = key.strip_prefix("tribune-") {
                deps.insert(dep.to_owned());
            }
        }
        out.insert(name, deps);
    }
    Ok(out)
}

fn documented_dag(root: &Path) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let text =
        fs::read_to_string(root.join("ARCHITECTURE.md")).context("reading ARCHITECTURE.md")?;
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        if line.trim() == "<!-- dag -->" {
            inside = !inside;
            continue;
        }
        if !inside || line.trim().starts_with("```") {
            continue;
        }
        if let Some((krate, deps)) = line.split_once(':') {
            let deps: BTreeSet<String> = deps
                .split(',')
                .map(|d| d.trim().to_owned())
                .filter(|d| !d.is_empty() && d != "—" && d != "-")
                .collect();
            out.insert(krate.trim().to_owned(), deps);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// `cargo test` enforces the house rules.
    #[test]
    fn tidy() {
        let root = super::super::project_root();
        let problems = super::check(&root).expect("tidy could not run");
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }
}
