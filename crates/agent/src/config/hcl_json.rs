//! HCL config text turned into the JSON Consul's JSON form of the same config would be.
//!
//! Consul reads HCL with HCL v1; `hcl-rs` parses HCL 2, which accepts the same config
//! syntax (`key = value`, `block { .. }`, lists of objects, comments, heredocs). Blocks
//! become objects; a block repeated under one name becomes a list (HCL v1 does the same),
//! so `services { .. } services { .. }` is a two-element list, and a single block under a
//! list key is wrapped into a list later by the normalizer. Block labels nest
//! (`a "b" { .. }` → `{"a": {"b": {..}}}`). Strings are taken literally: HCL v1 has no
//! `${..}` interpolation, so `"${HOME}"` stays as written.

use hcl::eval::{Context, Evaluate};
use hcl::{Expression, ObjectKey, Structure};
use serde_json::{Map, Number, Value};

use super::error::{ConfigError, Origin};
use super::normalize::Object;

/// Parses HCL text into a JSON object.
pub(crate) fn parse(text: &str, origin: &Origin) -> Result<Object, ConfigError> {
    let body = hcl::parse(text).map_err(|source| {
        let (line, column, message) = match &source {
            hcl::Error::Parse(e) => (
                e.location().line(),
                e.location().column(),
                e.message().to_owned(),
            ),
            other => (0, 0, other.to_string()),
        };
        ConfigError::Hcl {
            origin: origin.clone(),
            line,
            column,
            message,
            source: Box::new(source),
        }
    })?;
    body_to_object(body, origin, "")
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn body_to_object(body: hcl::Body, origin: &Origin, prefix: &str) -> Result<Object, ConfigError> {
    let mut out = Map::new();
    for structure in body.into_inner() {
        match structure {
            Structure::Attribute(attr) => {
                let key = attr.key.into_inner();
                let value = expr_to_json(attr.expr, origin, &join(prefix, &key))?;
                out.insert(key, value);
            }
            Structure::Block(block) => {
                let key = block.identifier.into_inner();
                let path = join(prefix, &key);
                let mut value = Value::Object(body_to_object(block.body, origin, &path)?);
                for label in block.labels.into_iter().rev() {
                    let mut wrapper = Map::new();
                    wrapper.insert(label.into_inner(), value);
                    value = Value::Object(wrapper);
                }
                push_block(&mut out, key, value);
            }
        }
    }
    Ok(out)
}

/// Adds a block under `key`; a second block with the same name turns the entry into a list.
fn push_block(out: &mut Object, key: String, value: Value) {
    match out.get_mut(&key) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            out.insert(key, value);
        }
    }
}

fn number(n: &hcl::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::from(i)
    } else if let Some(u) = n.as_u64() {
        Value::from(u)
    } else {
        // Non-finite floats cannot appear in parsed HCL; Null is the safe fallback.
        n.as_f64()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number)
    }
}

fn expr_to_json(expr: Expression, origin: &Origin, path: &str) -> Result<Value, ConfigError> {
    Ok(match expr {
        Expression::Null => Value::Null,
        Expression::Bool(b) => Value::Bool(b),
        Expression::Number(n) => number(&n),
        Expression::String(s) => Value::String(s),
        Expression::TemplateExpr(t) => Value::String(template_text(&t)),
        Expression::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|e| expr_to_json(e, origin, path))
                .collect::<Result<_, _>>()?,
        ),
        Expression::Object(obj) => {
            let mut out = Map::new();
            for (key, value) in obj {
                let key = object_key(key, origin, path)?;
                let value = expr_to_json(value, origin, &join(path, &key))?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Expression::Parenthesis(inner) => expr_to_json(*inner, origin, path)?,
        // Arithmetic and the like: evaluate without variables; references to variables fail.
        other => {
            let value =
                other
                    .evaluate(&Context::new())
                    .map_err(|source| ConfigError::HclExpression {
                        origin: origin.clone(),
                        key: path.to_owned(),
                        source: Box::new(source),
                    })?;
            hcl_value_to_json(value)
        }
    })
}

fn hcl_value_to_json(value: hcl::Value) -> Value {
    match value {
        hcl::Value::Null => Value::Null,
        hcl::Value::Bool(b) => Value::Bool(b),
        hcl::Value::Number(n) => number(&n),
        hcl::Value::String(s) => Value::String(s),
        hcl::Value::Array(items) => {
            Value::Array(items.into_iter().map(hcl_value_to_json).collect())
        }
        hcl::Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, hcl_value_to_json(v)))
                .collect(),
        ),
    }
}

/// The literal text of a quoted string or heredoc, interpolations left as written.
fn template_text(t: &hcl::expr::TemplateExpr) -> String {
    match t {
        hcl::expr::TemplateExpr::QuotedString(s) => s.clone(),
        hcl::expr::TemplateExpr::Heredoc(h) => match h.strip {
            hcl::expr::HeredocStripMode::None => h.template.clone(),
            hcl::expr::HeredocStripMode::Indent => dedent(&h.template),
        },
    }
}

/// `<<-EOT` heredocs: removes the smallest common leading-space run from every line.
fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let cut = line
            .char_indices()
            .take_while(|(i, c)| *i < indent && (*c == ' ' || *c == '\t'))
            .count();
        out.push_str(&line[cut..]);
    }
    out
}

fn object_key(key: ObjectKey, origin: &Origin, path: &str) -> Result<String, ConfigError> {
    Ok(match key {
        ObjectKey::Identifier(id) => id.into_inner(),
        ObjectKey::Expression(expr) => match expr_to_json(expr, origin, path)? {
            Value::String(s) => s,
            other => other.to_string(),
        },
        // The enum is non-exhaustive; any future kind of key has an HCL rendering.
        other => other.to_string(),
    })
}
