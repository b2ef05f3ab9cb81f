//! HCL config text turned into the JSON Consul's JSON form of the same config would be.
//!
//! Consul reads HCL with HCL v1; `hcl-rs` parses HCL 2, which accepts the same config
//! syntax (`key = value`, `block { .. }`, lists of objects, comments, heredocs). Blocks
//! become objects; a block repeated under one name becomes a list (HCL v1 does the same),
//! so `services { .. } services { .. }` is a two-element list, and a single block under a
//! list key is wrapped into a list later by the normalizer. Block labels nest
//! (`a "b" { .. }` → `{"a": {"b": {..}}}`). Strings are taken literally: HCL v1 has no
//! `${..}` interpolation, so `"${HOME}"` stays as written.
//!
//! One HCL v1 form HCL 2 refuses is kept working: a quoted name on the left of
//! `=` in a block body (`"Access-Control-Allow-Origin" = "*"` in
//! `response_headers { .. }`, as Consul's documentation writes it, or quoted
//! `node_meta` keys), written as its own line (`node_meta { "a" = "b" }` on
//! one line is still refused). Such names become placeholder identifiers
//! before parsing and get their text back after ([`unquote_block_keys`]); a
//! parse error on such a line names the key as written, though its column
//! counts the placeholder.

use hcl::eval::{Context, Evaluate};
use hcl::{Expression, ObjectKey, Structure};
use serde_json::{Map, Number, Value};

use super::error::{ConfigError, Origin};
use super::normalize::Object;

/// Parses HCL text into a JSON object.
pub(crate) fn parse(text: &str, origin: &Origin) -> Result<Object, ConfigError> {
    let (text, quoted) = unquote_block_keys(text);
    let body = hcl::parse(&text).map_err(|source| {
        let (line, column, message) = match &source {
            hcl::Error::Parse(e) => (
                e.location().line(),
                e.location().column(),
                e.message().to_owned(),
            ),
            other => (0, 0, other.to_string()),
        };
        let message = restore_quoted(message, &quoted);
        ConfigError::Hcl {
            origin: origin.clone(),
            line,
            column,
            message,
            source: Box::new(source),
        }
    })?;
    body_to_object(body, origin, "", &quoted)
}

/// `message` with the placeholders named as the user wrote them (highest
/// number first, so `..._1` does not eat the start of `..._12`).
fn restore_quoted(mut message: String, quoted: &[String]) -> String {
    for (n, name) in quoted.iter().enumerate().rev() {
        message = message.replace(&format!("{QUOTED_KEY}{n}"), &format!("{name:?}"));
    }
    message
}

/// Prefix of the identifiers that stand in for quoted block-body keys.
const QUOTED_KEY: &str = "tribune_hcl1_quoted_key_";

/// What an enclosing `{` or `[` opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    /// A block body, where HCL v1 allows `"name" = value`.
    Block,
    /// An object or list expression, where HCL 2 takes quoted keys itself.
    Expression,
}

/// `text` with every quoted name on the left of `=` at the start of a line in
/// a block body replaced by `QUOTED_KEY<n>`, and the names, by `n`. Strings,
/// comments and heredocs are skipped; anything this scan misreads is left for
/// the parser to judge as before.
fn unquote_block_keys(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut names = Vec::new();
    let mut stack: Vec<Nesting> = Vec::new();
    let mut heredoc: Option<String> = None;
    let mut scan = Scan::default();
    for line in text.split_inclusive('\n') {
        if let Some(end) = &heredoc {
            if line.trim() == end {
                heredoc = None;
            }
            out.push_str(line);
            continue;
        }
        let in_block = stack.last().is_none_or(|n| *n == Nesting::Block);
        let line = match quoted_key(line).filter(|_| in_block && !scan.in_comment) {
            Some((name, rest)) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                let rewritten = format!("{indent}{QUOTED_KEY}{}{rest}", names.len());
                names.push(name);
                rewritten
            }
            None => line.to_owned(),
        };
        heredoc = scan.line(&line, &mut stack);
        out.push_str(&line);
    }
    (out, names)
}

/// A line `"name" = ...`: the name and what follows its closing quote.
fn quoted_key(line: &str) -> Option<(String, &str)> {
    let body = line.trim_start().strip_prefix('"')?;
    let end = body.find(['"', '\\'])?;
    if body.as_bytes()[end] != b'"' {
        return None;
    }
    let rest = &body[end + 1..];
    let after = rest.trim_start();
    (after.starts_with('=') && !after.starts_with("==")).then(|| (body[..end].to_owned(), rest))
}

/// What the nesting scan carries from one line to the next.
#[derive(Default)]
struct Scan {
    /// Inside a `/* .. */` comment.
    in_comment: bool,
    /// The last character outside strings and comments that is not white
    /// space (what a `{` follows decides what it opens).
    last: u8,
}

impl Scan {
    /// Follows the `{`/`[` nesting through one line outside strings and
    /// comments; returns the terminator of a heredoc the line opens.
    fn line(&mut self, line: &str, stack: &mut Vec<Nesting>) -> Option<String> {
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if self.in_comment {
                // Bytes, not `line[i..]`: `i` may sit inside a multi-byte
                // character of the comment.
                if bytes[i..].starts_with(b"*/") {
                    self.in_comment = false;
                    i += 1;
                }
                i += 1;
                continue;
            }
            match c {
                b'#' => break,
                b'/' if bytes[i..].starts_with(b"//") => break,
                b'/' if bytes[i..].starts_with(b"/*") => {
                    self.in_comment = true;
                    i += 2;
                    continue;
                }
                b'"' => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                }
                b'<' if bytes[i..].starts_with(b"<<") => {
                    let tag = line[i + 2..].trim_start_matches('-').trim();
                    if !tag.is_empty()
                        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Some(tag.to_owned());
                    }
                }
                b'{' => {
                    // A block opens after its name or labels, in a block body;
                    // anything else is an object expression.
                    let expression = stack.last() == Some(&Nesting::Expression)
                        || matches!(self.last, b'=' | b'[' | b',' | b'(' | b':' | b'?');
                    stack.push(if expression {
                        Nesting::Expression
                    } else {
                        Nesting::Block
                    });
                }
                b'[' => stack.push(Nesting::Expression),
                b'}' | b']' => {
                    stack.pop();
                }
                _ => {}
            }
            if !c.is_ascii_whitespace() {
                self.last = c;
            }
            i += 1;
        }
        None
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn body_to_object(
    body: hcl::Body,
    origin: &Origin,
    prefix: &str,
    quoted: &[String],
) -> Result<Object, ConfigError> {
    let mut out = Map::new();
    for structure in body.into_inner() {
        match structure {
            Structure::Attribute(attr) => {
                let mut key = attr.key.into_inner();
                if let Some(name) = key
                    .strip_prefix(QUOTED_KEY)
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| quoted.get(n))
                {
                    key = name.clone();
                }
                let value = expr_to_json(attr.expr, origin, &join(prefix, &key))?;
                out.insert(key, value);
            }
            Structure::Block(block) => {
                let key = block.identifier.into_inner();
                let path = join(prefix, &key);
                let mut value = Value::Object(body_to_object(block.body, origin, &path, quoted)?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(text: &str) -> Value {
        Value::Object(parse(text, &Origin::HclFlag(0)).expect("parses"))
    }

    /// HCL v1's quoted names in block bodies, as Consul's documentation
    /// writes `response_headers`, read as HCL v1 reads them.
    #[test]
    fn quoted_names_in_block_bodies() {
        let v = parsed(
            r#"
http_config {
  response_headers {
    "Access-Control-Allow-Origin" = "*"
    "X-Frame-Options" = "DENY" # a comment { with a brace
  }
}
node_meta {
  "rack.id" = "r1"
  zone = "a"
}
"#,
        );
        assert_eq!(
            v["http_config"]["response_headers"],
            json!({"Access-Control-Allow-Origin": "*", "X-Frame-Options": "DENY"})
        );
        assert_eq!(v["node_meta"], json!({"rack.id": "r1", "zone": "a"}));
    }

    /// Quoted keys HCL 2 already reads (object expressions, also multi-line
    /// and inside lists), strings and heredocs are left as they are.
    #[test]
    fn expressions_strings_and_heredocs_are_untouched() {
        let v = parsed(
            r#"
meta = {
  "a.b" = "1"
}
services = [
  {
    name = "web"
    meta = {
      "c d" = "2"
    }
  }
]
notes = <<TEXT
"not" = "a key"
TEXT
/* "commented" = "out" { */
x = "\"y\" = 1"
"#,
        );
        assert_eq!(v["meta"], json!({"a.b": "1"}));
        assert_eq!(v["services"][0]["meta"], json!({"c d": "2"}));
        assert_eq!(v["notes"], json!("\"not\" = \"a key\"\n"));
        assert_eq!(v["x"], json!("\"y\" = 1"));
        assert!(v.get("commented").is_none());
        let (_, names) = unquote_block_keys("meta = {\n  \"a.b\" = \"1\"\n}\n");
        assert!(names.is_empty(), "{names:?}");
    }

    /// What the line scan must not trip on: multi-byte text in comments,
    /// indented heredocs, CRLF line ends, comment markers inside strings.
    #[test]
    fn comments_heredocs_line_ends_and_markers_in_strings() {
        let v = parsed(
            "/* überwacht { café */\r\n\
             node_meta {\r\n\
             \x20 \"a\" = \"x # not a comment\"\r\n\
             \x20 url = \"http://h/{x}\"\r\n\
             \x20 \"b\" = \"y\"\r\n\
             }\r\n\
             script = <<-EOT\r\n\
             \x20 \"c\" = \"z\"\r\n\
             \x20 EOT\r\n\
             after {\r\n\
             \x20 \"d\" = \"w\"\r\n\
             }\r\n",
        );
        assert_eq!(
            v["node_meta"],
            json!({"a": "x # not a comment", "url": "http://h/{x}", "b": "y"})
        );
        assert_eq!(v["script"], json!("\"c\" = \"z\"\n"));
        assert_eq!(v["after"], json!({"d": "w"}));
    }

    /// A parse error on a rewritten line names the key as it was written.
    #[test]
    fn errors_name_quoted_keys_as_written() {
        let err = parse("x {\n  \"my-key\" = \n}\n", &Origin::HclFlag(0))
            .expect_err("no value")
            .to_string();
        assert!(!err.contains(QUOTED_KEY), "{err}");
    }
}
