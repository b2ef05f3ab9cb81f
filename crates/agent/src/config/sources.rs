//! Finding, reading and ordering the config sources (Consul's `builder.newBuilder`).
//!
//! Order, lowest precedence first: Consul's defaults; `-dev` defaults; list-valued flags;
//! each `-config-file`/`-config-dir` path in command-line order (a directory contributes its
//! `*.json` and `*.hcl` files sorted by name, not recursing); the other flags; each `-hcl`
//! snippet. That is Consul's order, including `-hcl` coming after the flags.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tribune_types::goflag::Parsed;

use super::error::{ConfigError, Notes, Origin, Warning};
use super::normalize::{describe, merge_object, normalize_source, Object};
use super::schema::ROOT;
use super::{build, defaults, flags, hcl_json, RuntimeConfig};

/// A config file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Hcl,
}

impl Format {
    fn from_extension(path: &Path) -> Option<Format> {
        // Consul matches the suffix exactly (case-sensitive).
        let name = path.to_string_lossy();
        if name.ends_with(".json") {
            Some(Format::Json)
        } else if name.ends_with(".hcl") {
            Some(Format::Hcl)
        } else {
            None
        }
    }
}

/// Parses config text in `format` into a raw JSON object (not yet normalized).
pub(crate) fn parse_text(
    text: &str,
    format: Format,
    origin: &Origin,
) -> Result<Option<Object>, ConfigError> {
    // Consul skips sources with no data.
    if text.trim().is_empty() {
        return Ok(None);
    }
    match format {
        Format::Hcl => hcl_json::parse(text, origin).map(Some),
        Format::Json => {
            let value: Value = serde_json::from_str(text).map_err(|source| ConfigError::Json {
                origin: origin.clone(),
                line: source.line(),
                column: source.column(),
                source,
            })?;
            match value {
                Value::Object(map) => Ok(Some(map)),
                other => Err(ConfigError::NotAnObject {
                    origin: origin.clone(),
                    found: describe(&other),
                }),
            }
        }
    }
}

/// The files one `-config-file`/`-config-dir` argument stands for, in load order.
fn files_for_path(
    path: &Path,
    forced: Option<Format>,
    notes: &mut Notes,
) -> Result<Vec<(PathBuf, Format)>, ConfigError> {
    let meta = fs::metadata(path).map_err(|source| ConfigError::Open {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return match forced.or_else(|| Format::from_extension(path)) {
            Some(format) => Ok(vec![(path.to_owned(), format)]),
            None => Err(ConfigError::UnknownExtension {
                path: path.to_owned(),
            }),
        };
    }
    let entries = fs::read_dir(path).map_err(|source| ConfigError::ReadDir {
        path: path.to_owned(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::ReadDir {
            path: path.to_owned(),
            source,
        })?;
        names.push(entry.file_name());
    }
    // Go sorts by name bytewise; OsString ordering is bytewise on Unix.
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let file = path.join(&name);
        // Follows symlinks, as Consul resolves them before deciding.
        let meta = fs::metadata(&file).map_err(|source| ConfigError::Open {
            path: file.clone(),
            source,
        })?;
        if meta.is_dir() {
            continue;
        }
        match forced.or_else(|| Format::from_extension(&file)) {
            Some(format) => out.push((file, format)),
            None => notes.warnings.push(Warning::SkippedFile { path: file }),
        }
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Loads the configuration the agent flags describe. See the module docs for the order.
pub(crate) fn load(parsed: &Parsed) -> Result<RuntimeConfig, ConfigError> {
    let forced = match parsed.get("config-format") {
        None | Some("") => None,
        Some("json") => Some(Format::Json),
        Some("hcl") => Some(Format::Hcl),
        Some(other) => {
            return Err(ConfigError::ConfigFormat {
                format: other.to_owned(),
            })
        }
    };
    let dev = parsed.is_set("dev");
    let mut notes = Notes::default();
    let mut merged = Object::new();
    let add = |source: Object, merged: &mut Object| merge_object(merged, source, ROOT);

    add(
        normalize_source(defaults::defaults(), &Origin::Defaults, &mut notes)?,
        &mut merged,
    );
    if dev {
        add(
            normalize_source(defaults::dev(), &Origin::DevDefaults, &mut notes)?,
            &mut merged,
        );
    }

    let flag_sources = flags::flag_sources(parsed, &mut notes)?;
    add(flag_sources.lists, &mut merged);

    let mut config_files = Vec::new();
    for (name, value) in &parsed.order {
        if name != "config-file" && name != "config-dir" {
            continue;
        }
        for (file, format) in files_for_path(Path::new(value), forced, &mut notes)? {
            let text = read_file(&file)?;
            let origin = Origin::File(file.clone());
            config_files.push(file);
            if let Some(raw) = parse_text(&text, format, &origin)? {
                add(normalize_source(raw, &origin, &mut notes)?, &mut merged);
            }
        }
    }

    add(flag_sources.values, &mut merged);

    for (i, snippet) in parsed.all("hcl").iter().enumerate() {
        let origin = Origin::HclFlag(i);
        if let Some(raw) = parse_text(snippet, Format::Hcl, &origin)? {
            add(normalize_source(raw, &origin, &mut notes)?, &mut merged);
        }
    }

    let config = build::build(&merged, dev, config_files, notes)?;
    for warning in &config.warnings {
        tracing::warn!(target: "tribune::config", "{warning}");
    }
    if !config.ignored_keys.is_empty() {
        tracing::debug!(
            target: "tribune::config",
            keys = ?config.ignored_keys,
            "config keys accepted but not used by Tribune"
        );
    }
    Ok(config)
}
