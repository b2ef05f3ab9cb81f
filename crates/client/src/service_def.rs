//! Consul service-definition files, as `consul services register web.hcl` reads them.
//!
//! A file holds agent configuration in JSON or HCL with a `service` block (or several)
//! and/or a `services` list; other agent settings in the file are ignored. Keys may be
//! spelled `snake_case`, `PascalCase` or lower case, as Consul accepts:
//!
//! ```hcl
//! service {
//!   name = "web"
//!   port = 8080
//!   tags = ["v1"]
//!   check { http = "http://localhost:8080/health", interval = "10s" }
//! }
//! ```

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::AgentServiceRegistration;

/// The syntax of a definition file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// HCL (version 1 style blocks and attributes, as Consul's agent configuration uses).
    Hcl,
}

impl Format {
    /// The format implied by a file name: `.json` or `.hcl`; `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Some(Format::Json),
            Some(ext) if ext.eq_ignore_ascii_case("hcl") => Some(Format::Hcl),
            _ => None,
        }
    }

    /// Guesses from the content: JSON documents start with `{` or `[`.
    pub fn sniff(text: &str) -> Self {
        match text.trim_start().chars().next() {
            Some('{' | '[') => Format::Json,
            _ => Format::Hcl,
        }
    }
}

/// Why a definition file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The file could not be read.
    #[error("failed to read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid JSON or HCL.
    #[error("failed to parse {origin}: {message}")]
    Syntax {
        /// File name, or `<input>`.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// The document parses but does not hold usable service definitions.
    #[error("invalid service definition in {origin}: {message}")]
    Invalid {
        /// File name, or `<input>`.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads the service definitions of one file; the format comes from the extension,
/// or from the content when the extension is neither `.json` nor `.hcl`.
pub fn read_file(path: &Path) -> Result<Vec<AgentServiceRegistration>, DefinitionError> {
    let text = std::fs::read_to_string(path).map_err(|source| DefinitionError::Io {
        path: path.to_owned(),
        source,
    })?;
    let format = Format::from_path(path).unwrap_or_else(|| Format::sniff(&text));
    parse_named(&text, format, &path.display().to_string())
}

/// Parses the service definitions in `text`.
pub fn parse(text: &str, format: Format) -> Result<Vec<AgentServiceRegistration>, DefinitionError> {
    parse_named(text, format, "<input>")
}

fn parse_named(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<Vec<AgentServiceRegistration>, DefinitionError> {
    let syntax = |message: String| DefinitionError::Syntax {
        origin: origin.to_owned(),
        message,
    };
    let invalid = |message: String| DefinitionError::Invalid {
        origin: origin.to_owned(),
        message,
    };
    let root: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?,
        Format::Hcl => hcl::from_str(text).map_err(|e| syntax(e.to_string()))?,
    };
    let Value::Object(root) = root else {
        return Err(invalid("the top level must be an object".to_owned()));
    };
    let mut definitions = Vec::new();
    for (key, value) in root {
        // Same case-insensitive matching as the agent's configuration loader.
        if !(key.eq_ignore_ascii_case("service") || key.eq_ignore_ascii_case("services")) {
            continue;
        }
        // One block is an object, repeated blocks or a list are an array.
        let items = match value {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        for item in items {
            if !item.is_object() {
                return Err(invalid(format!("`{key}` entries must be objects")));
            }
            let registration =
                AgentServiceRegistration::from_json(item).map_err(|e| invalid(e.to_string()))?;
            definitions.push(registration);
        }
    }
    if definitions.is_empty() {
        return Err(invalid(
            "no `service` or `services` definition found".to_owned(),
        ));
    }
    Ok(definitions)
}
