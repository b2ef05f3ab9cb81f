//! Consul's `?filter=` expression language (the dialect of hashicorp/go-bexpr that Consul
//! uses), parsed once and evaluated against result objects rendered as Consul's JSON.
//!
//! ```text
//! Service.Tags contains "primary" and not (Checks.Status != "passing" or NodeMeta["os"] == linux)
//! ```
//!
//! # Language
//!
//! * Match operators: `Sel == V`, `Sel != V`, `Sel is empty`, `Sel is not empty`,
//!   `V in Sel`, `V not in Sel`, `Sel contains V`, `Sel not contains V`, `Sel matches V`,
//!   `Sel not matches V`.
//! * Logic: `not` binds tighter than `and`, which binds tighter than `or`; parentheses group.
//!   As in go-bexpr's grammar, `and`, `or` and the `not` prefix must be separated from their
//!   operands by whitespace (`not(x == 1)` is a syntax error, `not (x == 1)` is not).
//! * Selectors: an identifier (`[a-zA-Z][a-zA-Z0-9_]*`) followed by `.ident` or `["key"]`
//!   segments, e.g. `Service.Meta.env`, `ServiceMeta["foo-bar"]`.
//! * Values: `"double-quoted"` strings (Go escapes such as `\n`, `\u00e9`), `` `raw` ``
//!   strings, numbers (`-1`, `2.5`; no leading zeros or exponents) or a bare selector-shaped
//!   word (`passing`, `true`, `a.b`), which stands for its own text.
//!
//! # Evaluation over JSON
//!
//! go-bexpr walks Go structs by reflection; Tribune walks the JSON rendering of the same
//! structs, which has the same (`PascalCase`) field names. The rules, taken from go-bexpr as
//! Consul vendors it (v0.1.2) and its documented behaviour:
//!
//! * Field names and map keys are matched exactly (case-sensitively), as go-bexpr does.
//! * A selector that runs through a list applies the rest of the selector to every element
//!   and is true when **any** element satisfies the whole match, for every operator:
//!   `Checks.Status == "passing"` means "some check is passing" and
//!   `Checks.Status != "passing"` means "some check is not passing". An empty list satisfies
//!   nothing. Each match picks its own element, so
//!   `Checks.CheckID == a and Checks.Status == critical` does not require the same check.
//!   A selector that *ends* at a list applies the operator to the list itself.
//! * A key that is absent (or `null`) decides the match without a value, the way go-bexpr
//!   treats a missing map key: `==`, `in`, `is not empty` and `matches` are false; `!=`,
//!   `not in`, `is empty` and `not matches` are true. JSON cannot tell a struct field from a
//!   map key, and Go renders nil slices and maps as `null`, so this also covers fields that
//!   are omitted or empty in the rendering. go-bexpr instead rejects a selector naming a field
//!   the result type lacks (`Selector "Foo" is not valid`); endpoints that know their type's
//!   field names can get the same 400 from [`Filter::validate_fields`].
//! * `==`/`!=` coerce the value to the field's JSON type: strings compare as text, booleans
//!   through Go's `strconv.ParseBool` spellings (`true`, `T`, `1`, ...), numbers numerically
//!   (Go integer syntax such as `"0x1f"` is accepted; a value that is not a number at all is
//!   an error). JSON does not say whether a number was a Go integer or float, so `8080.0`
//!   equals an integer `8080` where go-bexpr would refuse to coerce it. Comparing a list or
//!   object with `==` is an error, as in go-bexpr.
//! * `in`/`contains` test membership in a list (elements coerced like `==`), key presence
//!   in an object and substring in a string.
//! * `is empty` holds for empty lists, objects and strings (v0.1.2 only allows it on lists
//!   and maps; strings are accepted as later go-bexpr versions accept them).
//! * `matches` applies a regular expression (compiled when the filter is parsed) to a string,
//!   searching anywhere in it like Go's `regexp.Match`. The syntax is the `regex` crate's,
//!   which is RE2's like Go's, except that `\d`, `\w`, `\s` and `\b` are Unicode-aware.
//! * Applying an operator to a value of a type it does not support (`Port contains "1"`,
//!   `Name.x == "y"` where `Name` is a string) is an error.
//!
//! Consul answers a filter go-bexpr cannot create with status 400 and the body
//! `Failed to create boolean expression evaluator: <error>`; [`FilterError`]'s `Display` is
//! the `<error>` part, worded like go-bexpr's (`1:13 (12): no match found, expected: ...`).
//! The errors [`Filter::matches`] returns are ones go-bexpr finds while creating the filter
//! (it checks operators and values against the Go type up front), so they deserve the same
//! answer; unlike go-bexpr they only surface when a result reaches the offending value.

mod eval;
mod parse;

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// A parsed filter expression, ready to be evaluated against any number of result objects.
#[derive(Clone, Debug)]
pub struct Filter {
    source: String,
    expr: parse::Expr,
}

impl Filter {
    /// Parses a filter expression, compiling any regular expressions in it.
    ///
    /// # Errors
    ///
    /// Any syntax error, an unterminated or malformed string, nesting deeper than
    /// [`Filter::MAX_NESTING`] parentheses, or an invalid regular expression.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let tree = parse::parse(expr)?;
        Ok(Filter {
            source: expr.to_owned(),
            expr: tree,
        })
    }

    /// Evaluates the filter against one result object rendered as Consul's JSON
    /// (`PascalCase` field names).
    ///
    /// # Errors
    ///
    /// A value that cannot be coerced to the type of the field it is compared with, an
    /// operator applied to a type that does not support it, or a selector that continues
    /// past a string, number or boolean.
    pub fn matches(&self, value: &Value) -> Result<bool, FilterError> {
        eval::eval(&self.expr, value)
    }

    /// Checks that every selector starts with one of `fields`, the top-level field names of
    /// the result type, failing like go-bexpr does for a field the type lacks.
    ///
    /// [`Filter::matches`] treats an unknown field as absent (see the module docs); an
    /// endpoint that knows its result type can call this right after parsing to answer a
    /// misspelt selector with go-bexpr's 400 instead of an empty result.
    ///
    /// # Errors
    ///
    /// [`FilterError::UnknownField`] for the first selector whose first segment is not in
    /// `fields`.
    pub fn validate_fields(&self, fields: &[&str]) -> Result<(), FilterError> {
        match self.expr.first_selector_outside(fields) {
            Some(field) => Err(FilterError::UnknownField {
                selector: field.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// The expression text this filter was parsed from.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Deepest nesting of parentheses [`Filter::parse`] accepts. go-bexpr has no limit, but
    /// an unbounded one would let a request exhaust the stack; no real filter comes near it.
    pub const MAX_NESTING: usize = parse::MAX_NESTING;
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

/// Why a filter could not be parsed or evaluated.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FilterError {
    /// The expression does not fit the grammar: nothing could be matched at `position`,
    /// where one of `expected` was needed.
    #[error("{position}: no match found, expected: {}", ExpectedList(expected))]
    NoMatch {
        /// Where parsing got furthest before failing.
        position: Position,
        /// What would have let it go on, sorted as go-bexpr's parser lists them.
        expected: Vec<Expected>,
    },

    /// A construct that the grammar recognises as malformed (an unterminated string, a
    /// missing `)`, ...).
    #[error("{position}: rule {rule}: {problem}")]
    Syntax {
        /// Where the problem was found.
        position: Position,
        /// The grammar rule that reported it (named as in go-bexpr's grammar).
        rule: GrammarRule,
        /// What is wrong.
        problem: SyntaxProblem,
    },

    /// Parentheses nest deeper than [`Filter::MAX_NESTING`].
    #[error("{position}: parentheses nest deeper than {limit} levels")]
    TooDeep {
        /// The `(` that went past the limit.
        position: Position,
        /// The limit.
        limit: usize,
    },

    /// The value of a `matches` expression is not a valid regular expression.
    #[error("{position}: Failed to compile regular expression {pattern:?}: {source}")]
    InvalidRegex {
        /// Where the pattern starts in the expression.
        position: Position,
        /// The pattern as written (after unquoting).
        pattern: String,
        /// The regex compiler's complaint.
        source: regex::Error,
    },

    /// A selector's first segment is not a field of the result type
    /// (from [`Filter::validate_fields`]).
    #[error("Selector {selector:?} is not valid")]
    UnknownField {
        /// The unknown field name.
        selector: String,
    },

    /// A selector continues past a value that has no fields.
    #[error(
        "Selector {selector:?} is not valid: a value of type {kind} does not support nested field selection"
    )]
    NotSelectable {
        /// The selector up to and including the segment that could not be applied.
        selector: String,
        /// The type of the value it was applied to.
        kind: JsonKind,
    },

    /// An operator was applied to a value of a type it does not support.
    #[error("Invalid match operator \"{op}\" for selector {selector:?}: not supported on {}", Operand(*kind, *in_list))]
    UnsupportedOperator {
        /// The match's selector.
        selector: String,
        /// The operator.
        op: MatchOp,
        /// The type of the value (or, when `in_list`, of the list element) it met.
        kind: JsonKind,
        /// Whether `kind` is the type of an element of the list the selector names.
        in_list: bool,
    },

    /// The value of a match cannot be read as the type of the field it is compared with.
    #[error("Failed to coerce value {value:?} for selector {selector:?}: not a valid {target}")]
    CoerceFailed {
        /// The match's selector.
        selector: String,
        /// The value as written in the expression.
        value: String,
        /// The field's type.
        target: JsonKind,
    },
}

/// A place in the filter expression: 1-based line and column (counted in characters, as
/// go-bexpr's parser does) and 0-based byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
    /// Byte offset, from 0.
    pub offset: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} ({})", self.line, self.column, self.offset)
    }
}

/// Something the parser would have accepted where it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expected {
    /// This exact text (an operator, keyword or punctuation).
    Literal(&'static str),
    /// One character of this class, written as in the grammar (`[a-zA-Z]`).
    CharClass(&'static str),
    /// The end of the expression.
    EndOfInput,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Quoted the way Go's %q quotes, which is how go-bexpr's parser lists literals;
            // the grammar's literals are ASCII, so escaping quote and backslash suffices.
            Expected::Literal(text) => {
                f.write_str("\"")?;
                for ch in text.chars() {
                    if ch == '"' || ch == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{ch}")?;
                }
                f.write_str("\"")
            }
            Expected::CharClass(class) => f.write_str(class),
            Expected::EndOfInput => f.write_str("EOF"),
        }
    }
}

/// Renders a list of expectations as `a, b, c or d`.
struct ExpectedList<'a>(&'a [Expected]);

impl fmt::Display for ExpectedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.0.len().saturating_sub(1);
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(if i == last { " or " } else { ", " })?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// The grammar rule that reported a [`FilterError::Syntax`], named as in go-bexpr's grammar
/// so that messages read the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrammarRule {
    /// A parenthesised group.
    Grouping,
    /// A single match expression.
    Match,
    /// A `["key"]` index in a selector.
    Index,
    /// A number value.
    Number,
    /// A string value.
    String,
}

impl fmt::Display for GrammarRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GrammarRule::Grouping => "\"grouping\"",
            GrammarRule::Match => "\"match\"",
            GrammarRule::Index => "\"index\"",
            GrammarRule::Number => "\"number\"",
            GrammarRule::String => "\"string\"",
        })
    }
}

/// What is wrong in a [`FilterError::Syntax`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyntaxProblem {
    /// A `(` group is not closed by `)`.
    UnmatchedParentheses,
    /// `in`/`not in` is not followed by a selector.
    InvalidSelector,
    /// `[` is not followed by a string.
    InvalidIndex,
    /// `["key"` is not followed by `]`.
    UnclosedIndex,
    /// A number runs into something other than whitespace, `)` or the end.
    InvalidNumber,
    /// A string reaches the end of the expression without its closing quote.
    UnterminatedString,
    /// A double-quoted string holds an invalid escape sequence or a newline.
    InvalidString,
}

impl fmt::Display for SyntaxProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The texts are go-bexpr's (the last is Go's strconv.ErrSyntax).
        f.write_str(match self {
            SyntaxProblem::UnmatchedParentheses => "Unmatched parentheses",
            SyntaxProblem::InvalidSelector => "Invalid selector",
            SyntaxProblem::InvalidIndex => "Invalid index",
            SyntaxProblem::UnclosedIndex => "Unclosed index expression",
            SyntaxProblem::InvalidNumber => "Invalid number literal",
            SyntaxProblem::UnterminatedString => "Unterminated string literal",
            SyntaxProblem::InvalidString => "invalid syntax",
        })
    }
}

/// A match operator (`contains` is `In`, `not contains` is `NotIn`, as in go-bexpr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `in` / `contains`
    In,
    /// `not in` / `not contains`
    NotIn,
    /// `is empty`
    IsEmpty,
    /// `is not empty`
    IsNotEmpty,
    /// `matches`
    Matches,
    /// `not matches`
    NotMatches,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // go-bexpr's names for its operators, which its error messages use.
        f.write_str(match self {
            MatchOp::Equal => "Equal",
            MatchOp::NotEqual => "Not Equal",
            MatchOp::In => "In",
            MatchOp::NotIn => "Not In",
            MatchOp::IsEmpty => "Is Empty",
            MatchOp::IsNotEmpty => "Is Not Empty",
            MatchOp::Matches => "Matches",
            MatchOp::NotMatches => "Not Matches",
        })
    }
}

/// The type of a JSON value, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// A list.
    Array,
    /// An object (a struct or a map in Consul's Go types).
    Object,
}

impl JsonKind {
    /// The kind of `value`.
    #[must_use]
    pub fn of(value: &Value) -> JsonKind {
        match value {
            Value::Null => JsonKind::Null,
            Value::Bool(_) => JsonKind::Bool,
            Value::Number(_) => JsonKind::Number,
            Value::String(_) => JsonKind::String,
            Value::Array(_) => JsonKind::Array,
            Value::Object(_) => JsonKind::Object,
        }
    }
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "bool",
            JsonKind::Number => "number",
            JsonKind::String => "string",
            JsonKind::Array => "list",
            JsonKind::Object => "object",
        })
    }
}

/// Renders the operand of an unsupported operator: `a value of type number`, or
/// `a list of object values` when the operator met the list's elements.
struct Operand(JsonKind, bool);

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            write!(f, "a list of {} values", self.0)
        } else {
            write!(f, "a value of type {}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A `/v1/health/service/:service` entry: node, service and a list of checks.
    fn health_entry() -> Value {
        json!({
            "Node": {
                "ID": "b4f64e8c", "Node": "node-1", "Address": "10.0.0.1", "Datacenter": "dc1",
                "TaggedAddresses": {"lan": "10.0.0.1"},
                "Meta": {"os": "linux", "rack-id": "r1", "5": "five"}
            },
            "Service": {
                "ID": "web-1", "Service": "web", "Tags": ["primary", "v1"], "Address": "",
                "Meta": {"version": "1.2", "foo-bar": "baz"}, "Port": 8080,
                "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false,
                "Proxy": {}, "Connect": null, "Ports": [80, 443], "Flags": [true]
            },
            "Checks": [
                {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
                {"CheckID": "svc", "Status": "warning", "ServiceTags": ["primary"],
                 "Output": "HTTP GET: 200 OK"}
            ]
        })
    }

    /// A `/v1/catalog/service/:service` entry (flat), plus odd fields for edge cases.
    fn catalog_entry() -> Value {
        json!({
            "Node": "node-2", "Address": "198.18.0.2", "TaggedAddresses": null,
            "NodeMeta": {"arch": "arm", "os": "linux"}, "ServiceKind": "",
            "ServiceName": "api-internal", "ServiceTags": ["test", "tag"],
            "ServiceMeta": {"environment": "production"}, "ServicePort": 9090,
            "ServiceEnableTagOverride": false, "CreateIndex": 29, "Weight": 1.5, "Delta": -3,
            "Big": u64::MAX, "Checks": [], "Nested": [[{"A": "x"}], [{"A": "y"}, {"B": 1}]],
            "Quote": "a\"b", "Text": "tab\there", "Unicode": "héllo",
            "not": "x", "or": "y", "and": "z", "notes": "n", "in": ["in"]
        })
    }

    const HEALTH: u8 = 0;
    const CATALOG: u8 = 1;

    fn doc(which: u8) -> Value {
        if which == HEALTH {
            health_entry()
        } else {
            catalog_entry()
        }
    }

    #[test]
    fn evaluation_table() {
        let cases: &[(&str, u8, bool)] = &[
            // == and != on strings, with every value spelling
            (r#"Service.Service == "web""#, HEALTH, true),
            (r#"Service.Service=="web""#, HEALTH, true),
            ("Service.Service == web", HEALTH, true),
            ("Service.Service == `web`", HEALTH, true),
            (r#"Service.Service != "web""#, HEALTH, false),
            (r#"Service.Service != "db""#, HEALTH, true),
            (r#"Service.Service == "Web""#, HEALTH, false),
            (r#"Service.Address == """#, HEALTH, true),
            (r#"Quote == `a"b`"#, CATALOG, true),
            (r#"Text == "tab\there""#, CATALOG, true),
            ("Text == `tab\\there`", CATALOG, false),
            (r#"Unicode == "h\u00e9llo""#, CATALOG, true),
            (r#"Unicode == "h\xc3\xa9llo""#, CATALOG, true),
            (r#"Unicode == "héllo""#, CATALOG, true),
            // numeric coercion
            ("Service.Port == 8080", HEALTH, true),
            (r#"Service.Port == "8080""#, HEALTH, true),
            (r#"Service.Port == "0x1F90""#, HEALTH, true),
            ("Service.Port != 8081", HEALTH, true),
            ("Service.Port == 8080.0", HEALTH, true),
            ("Weight == 1.5", CATALOG, true),
            ("Weight == 1", CATALOG, false),
            ("Delta == -3", CATALOG, true),
            ("Big == 18446744073709551615", CATALOG, true),
            ("CreateIndex == 29", CATALOG, true),
            ("Service.Weights.Passing == 1", HEALTH, true),
            // boolean coercion
            ("Service.EnableTagOverride == false", HEALTH, true),
            (r#"Service.EnableTagOverride == "F""#, HEALTH, true),
            ("Service.EnableTagOverride == 0", HEALTH, true),
            ("Service.EnableTagOverride != true", HEALTH, true),
            ("ServiceEnableTagOverride == true", CATALOG, false),
            // is empty / is not empty on lists, objects, strings, null and missing
            ("Service.Tags is not empty", HEALTH, true),
            ("Service.Tags is empty", HEALTH, false),
            ("Service.Address is empty", HEALTH, true),
            ("Service.Service is not empty", HEALTH, true),
            ("Service.Proxy is empty", HEALTH, true),
            ("Service.Meta is not empty", HEALTH, true),
            ("Service.Connect is empty", HEALTH, true),
            ("Service.Connect is not empty", HEALTH, false),
            ("Service.Missing is empty", HEALTH, true),
            ("TaggedAddresses is empty", CATALOG, true),
            ("ServiceKind is empty", CATALOG, true),
            ("Checks is empty", CATALOG, true),
            ("Checks is not empty", HEALTH, true),
            // in / contains on lists (membership), maps (keys) and strings (substring)
            (r#""primary" in Service.Tags"#, HEALTH, true),
            ("primary in Service.Tags", HEALTH, true),
            (r#""v2" in Service.Tags"#, HEALTH, false),
            (r#""v2" not in Service.Tags"#, HEALTH, true),
            (r#"Service.Tags contains "v1""#, HEALTH, true),
            (r#"Service.Tags not contains "v1""#, HEALTH, false),
            ("443 in Service.Ports", HEALTH, true),
            (r#""0x50" in Service.Ports"#, HEALTH, true),
            ("81 in Service.Ports", HEALTH, false),
            ("true in Service.Flags", HEALTH, true),
            (r#""version" in Service.Meta"#, HEALTH, true),
            (r#""1.2" in Service.Meta"#, HEALTH, false),
            (r#"Service.Meta contains "foo-bar""#, HEALTH, true),
            ("5 in Node.Meta", HEALTH, true),
            (r#""eb" in Service.Service"#, HEALTH, true),
            (r#"Service.Service contains "we""#, HEALTH, true),
            (r#"Service.Service not contains "x""#, HEALTH, true),
            (r#""" in Service.Service"#, HEALTH, true),
            (r#""x" in Service.Connect"#, HEALTH, false),
            (r#""x" not in Service.Missing"#, HEALTH, true),
            // maps: .key, ["key"], missing keys
            ("Node.Meta.os == linux", HEALTH, true),
            (r#"Node.Meta["rack-id"] == "r1""#, HEALTH, true),
            (r#"Node.Meta[ "rack-id" ] == r1"#, HEALTH, true),
            ("Node.Meta[`os`] == linux", HEALTH, true),
            (r#"Service.Meta["foo-bar"] == "baz""#, HEALTH, true),
            (
                r#"NodeMeta["os"] == "linux" and ServiceMeta.environment == production"#,
                CATALOG,
                true,
            ),
            (r#"Node.Meta.missing == "x""#, HEALTH, false),
            (r#"Node.Meta.missing != "x""#, HEALTH, true),
            ("Node.Meta.missing is empty", HEALTH, true),
            ("Node.Meta.missing is not empty", HEALTH, false),
            (r#""a" in Node.Meta.missing"#, HEALTH, false),
            (r#""a" not in Node.Meta.missing"#, HEALTH, true),
            (r#"Node.Meta.missing matches ".""#, HEALTH, false),
            (r#"Node.Meta.missing not matches ".""#, HEALTH, true),
            (r#"Missing.Deeper.Still == "x""#, HEALTH, false),
            (r#"Missing.Deeper.Still != "x""#, HEALTH, true),
            (r#"TaggedAddresses.lan == "x""#, CATALOG, false),
            // field names are case-sensitive, as in go-bexpr
            (r#"service.service == "web""#, HEALTH, false),
            (r#"Node.Meta.OS == "linux""#, HEALTH, false),
            // selectors through lists of objects: true if any element matches
            (r#"Checks.Status == "passing""#, HEALTH, true),
            (r#"Checks.Status == "critical""#, HEALTH, false),
            (r#"Checks.Status != "passing""#, HEALTH, true),
            (r#"Checks.Status != "critical""#, HEALTH, true),
            (r#"not Checks.Status != "passing""#, HEALTH, false),
            (
                "Checks.CheckID == serfHealth and Checks.Status == warning",
                HEALTH,
                true,
            ),
            (r#""primary" in Checks.ServiceTags"#, HEALTH, true),
            ("Checks.ServiceTags is empty", HEALTH, true),
            ("Checks.ServiceTags is not empty", HEALTH, true),
            (r#"Checks.Output contains "200""#, HEALTH, true),
            ("Checks.Output is empty", HEALTH, true),
            (r#"Checks.Status == "passing""#, CATALOG, false),
            (r#"Checks.Status != "passing""#, CATALOG, false),
            ("Checks.Status is empty", CATALOG, false),
            (r#"Nested.A == "y""#, CATALOG, true),
            (r#"Nested.A == "z""#, CATALOG, false),
            ("Nested.B == 1", CATALOG, true),
            // matches
            (r#"Service.Service matches "^w.b$""#, HEALTH, true),
            (r#"Service.Service not matches "^w""#, HEALTH, false),
            (r#"Node.Meta.os matches "in""#, HEALTH, true),
            (r#"Checks.Status matches "^warn""#, HEALTH, true),
            (r"Service.Meta.version matches `^\d+\.\d+$`", HEALTH, true),
            (r#"Service.Meta.version matches "^\\d+$""#, HEALTH, false),
            // not, and, or, precedence (not > and > or), grouping
            (r#"not Service.Service == "web""#, HEALTH, false),
            (r#"not not Service.Service == "web""#, HEALTH, true),
            (r#"not not not Service.Service == "web""#, HEALTH, false),
            (
                r#"Service.Service == "x" and Service.Port == 1 or Service.Port == 8080"#,
                HEALTH,
                true,
            ),
            (
                r#"Service.Service == "x" and (Service.Port == 1 or Service.Port == 8080)"#,
                HEALTH,
                false,
            ),
            (
                r#"Service.Service == "web" or Service.Service == "x" and Service.Port == 1"#,
                HEALTH,
                true,
            ),
            (
                r#"(Service.Service == "web" or Service.Service == "x") and Service.Port == 1"#,
                HEALTH,
                false,
            ),
            (
                r#"not Service.Service == "x" and Service.Port == 1"#,
                HEALTH,
                false,
            ),
            (
                r#"not (Service.Service == "x" and Service.Port == 1)"#,
                HEALTH,
                true,
            ),
            (
                r#"not (Service.Service == "web") or Service.Port == 8080"#,
                HEALTH,
                true,
            ),
            (r#"(Service.Service == "web")"#, HEALTH, true),
            (r#"((( Service.Service == "web" )))"#, HEALTH, true),
            (
                r#"( Service.Service == "web" ) and ( Service.Port == 8080 )"#,
                HEALTH,
                true,
            ),
            (
                "Service.Port == 1 or Service.Port == 2 or Service.Port == 8080",
                HEALTH,
                true,
            ),
            (
                "Service.Port == 8080 and Service.Port == 8080 and Service.Port == 1",
                HEALTH,
                false,
            ),
            ("(Service.Port == 8080)", HEALTH, true),
            ("(Service.Port == 8080 )", HEALTH, true),
            // whitespace of every kind, leading and trailing
            (
                "  Service.Service == \"web\"\n\tand\r\nService.Port == 8080  ",
                HEALTH,
                true,
            ),
            ("Service.Tags\tis\nnot\r\nempty", HEALTH, true),
            // keywords are also valid selectors and bare values
            ("not == x", CATALOG, true),
            ("notes == n", CATALOG, true),
            ("not not == x", CATALOG, false),
            ("or == y or not == x", CATALOG, true),
            ("and == z and or == y", CATALOG, true),
            ("in in in", CATALOG, true),
            ("Node == or", CATALOG, false),
        ];
        for &(expr, which, want) in cases {
            let filter =
                Filter::parse(expr).unwrap_or_else(|err| panic!("{expr:?} does not parse: {err}"));
            let got = filter
                .matches(&doc(which))
                .unwrap_or_else(|err| panic!("{expr:?} fails: {err}"));
            assert_eq!(got, want, "{expr:?}");
        }
    }

    #[test]
    fn evaluation_errors() {
        type Check = fn(&FilterError) -> bool;
        let cases: &[(&str, Check)] = &[
            (r#"Service.Tags == "primary""#, |e| {
                matches!(
                    e,
                    FilterError::UnsupportedOperator {
                        op: MatchOp::Equal,
                        kind: JsonKind::Array,
                        in_list: false,
                        ..
                    }
                )
            }),
            (r#"Service.Meta != "x""#, |e| {
                matches!(
                    e,
                    FilterError::UnsupportedOperator {
                        kind: JsonKind::Object,
                        ..
                    }
                )
            }),
            (r#"Service.Port contains "80""#, |e| {
                matches!(
                    e,
                    FilterError::UnsupportedOperator {
                        op: MatchOp::In,
                        ..
                    }
                )
            }),
            (r#"Service.Port matches "8""#, |e| {
                matches!(
                    e,
                    FilterError::UnsupportedOperator {
                        op: MatchOp::Matches,
                        ..
                    }
                )
            }),
            ("Service.Tags matches x", |e| {
                matches!(
                    e,
                    FilterError::UnsupportedOperator {
                        kind: JsonKind::Array,
                        ..
                    }
                )
            }),
            ("Service.Port is empty", |e| {
                matches!(
                    e,
                    FilterError::UnsupportedOperator {
                        op: MatchOp::IsEmpty,
                        ..
                    }
                )
            }),
            ("Service.EnableTagOverride is not empty", |e| {
                matches!(e, FilterError::UnsupportedOperator { .. })
            }),
            (r#""x" in Checks"#, |e| {
                matches!(
                    e,
                    FilterError::UnsupportedOperator {
                        kind: JsonKind::Object,
                        in_list: true,
                        ..
                    }
                )
            }),
            (r#"Service.Port == "abc""#, |e| {
                matches!(
                    e,
                    FilterError::CoerceFailed {
                        target: JsonKind::Number,
                        ..
                    }
                )
            }),
            (r#""abc" in Service.Ports"#, |e| {
                matches!(
                    e,
                    FilterError::CoerceFailed {
                        target: JsonKind::Number,
                        ..
                    }
                )
            }),
            (r#"Service.EnableTagOverride == "yes""#, |e| {
                matches!(
                    e,
                    FilterError::CoerceFailed {
                        target: JsonKind::Bool,
                        ..
                    }
                )
            }),
            (
                r#"Service.Service.x == "y""#,
                |e| matches!(e, FilterError::NotSelectable { selector, kind: JsonKind::String } if selector == "Service.Service.x"),
            ),
            (r#"Service.Tags.x == "y""#, |e| {
                matches!(e, FilterError::NotSelectable { .. })
            }),
            // the error surfaces even though a later operand would have decided the `or`
            (
                r#"Service.Port == "abc" or Service.Service == "web""#,
                |e| matches!(e, FilterError::CoerceFailed { .. }),
            ),
        ];
        for (expr, check) in cases {
            let filter =
                Filter::parse(expr).unwrap_or_else(|err| panic!("{expr:?} does not parse: {err}"));
            match filter.matches(&health_entry()) {
                Err(err) => assert!(check(&err), "{expr:?}: unexpected error {err:?}"),
                Ok(got) => panic!("{expr:?} evaluated to {got} instead of failing"),
            }
        }
        // `and`/`or` stop before an operand that would fail.
        let short: &[(&str, bool)] = &[
            (r#"Service.Service == "web" or Service.Port == "abc""#, true),
            (r#"Service.Service == "x" and Service.Port == "abc""#, false),
        ];
        for &(expr, want) in short {
            let filter = Filter::parse(expr).unwrap_or_else(|err| panic!("{expr:?}: {err}"));
            assert_eq!(filter.matches(&health_entry()).ok(), Some(want), "{expr:?}");
        }
    }

    #[test]
    fn invalid_expressions() {
        let nested = format!(
            "{}Service == 1{}",
            "(".repeat(Filter::MAX_NESTING + 1),
            ")".repeat(Filter::MAX_NESTING + 1)
        );
        let mut cases: Vec<&str> = vec![
            "",
            "   ",
            "\n",
            "Service",
            "Service ==",
            "== \"x\"",
            "Service = \"x\"",
            "Service === x",
            "Service ==== x",
            "Service !== x",
            "Service <> x",
            "Service > 1",
            "Service == \"x",
            "Service == `x",
            "Service == 'x'",
            "(Service == \"x\"",
            "Service == \"x\")",
            "()",
            "(Service == \"x\"))",
            "Service == \"x\" and",
            "Service == \"x\" or",
            "and Service == 1",
            "or",
            "not",
            "not ",
            "not(Service == \"x\")",
            "(Service == 1)and(Port == 2)",
            "Service == 1and Port == 2",
            "Service == 1 andPort == 2",
            "Service == 01",
            "Service == 1.",
            "Service == .5",
            "Service == 1e5",
            "Service == 1x",
            "Service == 1.2.3",
            "Service == -",
            "Service == -x",
            "Service == +1",
            "Service == 0x10",
            "\"x\" in",
            "\"x\" in \"y\"",
            "\"x\" in (Tags)",
            "\"x\" in 5",
            "\"x\" inTags",
            "Service in \"x\"",
            "Meta[1] == 1",
            "Meta[\"x\" == 1",
            "Meta[] == 1",
            "Meta[x] == 1",
            "Meta.\"x\" == 1",
            "Meta. x == 1",
            "Meta.1 == 1",
            "Meta..x == 1",
            "Meta.x. == 1",
            "1Service == 1",
            "_x == 1",
            "Service is",
            "Service is not",
            "Service isempty",
            "Service is  not empty x",
            "Service empty",
            "Service contains",
            "Service contains\"x\"",
            "Service not == x",
            "Service matches",
            "Service == \"a\\qb\"",
            "Service == \"\\\"",
            "Service == \"a\nb\"",
            "Service == \"\\'\"",
            "Service == \"\\400\"",
            "Service == x y",
            "Service == \"x\" Service == \"y\"",
            "Service == \"x\" && Port == 1",
            "Service == \"x\" || Port == 1",
            "!(Service == x)",
            "Service matches \"(\"",
            "Service not matches \"[a-\"",
            "Service matches `\\p{Nope}`",
            "Service.Tags[0] == x",
            "Service == \"x\" and (",
            "Service == \"x\" and ()",
            "Sérvice == x",
            "Service == x\u{0}",
            "\u{feff}Service == x",
            "Service ==\u{a0}x",
            "\"/Service\" == x",
            "[\"a\"] in Tags",
            "Service == \"x\" not",
            "not not",
            "((Service == 1)",
            "Service == (x)",
            "Node.Node == node-1", // a bare value is selector-shaped: it cannot hold '-'
        ];
        cases.push(&nested);
        for expr in cases {
            if let Ok(filter) = Filter::parse(expr) {
                panic!("{expr:?} parsed as {filter:?}");
            }
        }
    }

    #[test]
    fn error_messages_read_like_bexpr() {
        let cases: &[(&str, &str)] = &[
            (
                r#"Service.Name="foo""#,
                r#"1:13 (12): no match found, expected: "!=", ".", "==", "[", [ \t\r\n] or [a-zA-Z0-9_]"#,
            ),
            (
                "",
                r#"1:1 (0): no match found, expected: "(", "-", "0", "\"", "`", "not", [ \t\r\n], [1-9] or [a-zA-Z]"#,
            ),
            (
                r#"Service == "x" )"#,
                r#"1:16 (15): no match found, expected: "and", "or", [ \t\r\n] or EOF"#,
            ),
            (r#"Service == "x"#, r#"1:14 (13): rule "string": Unterminated string literal"#),
            (r#"(Service == "x""#, r#"1:16 (15): rule "grouping": Unmatched parentheses"#),
            ("Service == 1x", r#"1:13 (12): rule "number": Invalid number literal"#),
            (r#""x" in "y""#, r#"1:8 (7): rule "match": Invalid selector"#),
            ("Meta[1] == 1", r#"1:6 (5): rule "index": Invalid index"#),
            (r#"Meta["x" == 1"#, r#"1:10 (9): rule "index": Unclosed index expression"#),
            (r#"Service == "a\qb""#, r#"1:12 (11): rule "string": invalid syntax"#),
            ("a == 1 and\nb ==", "2:5 (15): no match found, expected: \"-\", \"0\", \"\\\"\", \"`\", [ \\t\\r\\n], [1-9] or [a-zA-Z]"),
        ];
        for &(expr, want) in cases {
            match Filter::parse(expr) {
                Err(err) => assert_eq!(err.to_string(), want, "{expr:?}"),
                Ok(filter) => panic!("{expr:?} parsed as {filter:?}"),
            }
        }

        let err = Filter::parse(r#"Service matches "(""#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with(r#"1:17 (16): Failed to compile regular expression "(": "#),
            "{err}"
        );

        let deep = "(".repeat(Filter::MAX_NESTING + 1);
        assert!(matches!(
            Filter::parse(&deep),
            Err(FilterError::TooDeep {
                limit: Filter::MAX_NESTING,
                ..
            })
        ));

        let eval_err = |expr: &str| {
            Filter::parse(expr)
                .ok()
                .and_then(|f| f.matches(&health_entry()).err())
                .map(|e| e.to_string())
        };
        assert_eq!(
            eval_err(r#"Service.Port == "abc""#).as_deref(),
            Some(r#"Failed to coerce value "abc" for selector "Service.Port": not a valid number"#)
        );
        assert_eq!(
            eval_err(r#"Service.Tags == "x""#).as_deref(),
            Some(
                r#"Invalid match operator "Equal" for selector "Service.Tags": not supported on a value of type list"#
            )
        );
        assert_eq!(
            eval_err(r#""x" not in Checks"#).as_deref(),
            Some(
                r#"Invalid match operator "Not In" for selector "Checks": not supported on a list of object values"#
            )
        );
        assert_eq!(
            eval_err("Service.Port.x is empty").as_deref(),
            Some(
                r#"Selector "Service.Port.x" is not valid: a value of type number does not support nested field selection"#
            )
        );
    }

    #[test]
    fn syntax_errors_win_over_regex_errors() {
        // go-bexpr parses before compiling patterns, so the later syntax error is reported.
        let err = Filter::parse(r#"A matches "(" and B == "x"#);
        assert!(
            matches!(
                err,
                Err(FilterError::Syntax {
                    problem: SyntaxProblem::UnterminatedString,
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn validate_fields_rejects_unknown_top_level_fields() {
        let fields = ["Node", "Service", "Checks"];
        let ok = Filter::parse(
            r#"Service.Service == web and not (Checks.Status == critical or "x" in Node.Meta)"#,
        );
        assert!(ok.is_ok_and(|f| f.validate_fields(&fields).is_ok()));
        let bad = Filter::parse("Service.Service == web or Servce.Port == 1")
            .map(|f| f.validate_fields(&fields));
        match bad {
            Ok(Err(err)) => assert_eq!(err.to_string(), r#"Selector "Servce" is not valid"#),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn long_and_deep_inputs_do_not_exhaust_the_stack() {
        let chain = vec!["Service.Port == 8080"; 20_000].join(" and ");
        assert_eq!(
            Filter::parse(&chain)
                .and_then(|f| f.matches(&health_entry()))
                .ok(),
            Some(true)
        );

        let nots = format!("{}Service.Port == 8080", "not ".repeat(20_001));
        assert_eq!(
            Filter::parse(&nots)
                .and_then(|f| f.matches(&health_entry()))
                .ok(),
            Some(false)
        );

        let nested = format!(
            "{}Service.Port == 8080{}",
            "(".repeat(Filter::MAX_NESTING),
            ")".repeat(Filter::MAX_NESTING)
        );
        assert_eq!(
            Filter::parse(&nested)
                .and_then(|f| f.matches(&health_entry()))
                .ok(),
            Some(true)
        );

        for junk in [
            "(".repeat(100_000),
            "[".repeat(100_000),
            "not (".repeat(50_000),
            "a[\"".repeat(30_000),
        ] {
            assert!(Filter::parse(&junk).is_err());
        }

        // Lists nested a few thousand deep are walked without recursion.
        let mut deep = json!({"A": "found"});
        for _ in 0..2_000 {
            deep = Value::Array(vec![deep]);
        }
        // (Built by hand: `json!` would re-serialize `deep` recursively.)
        let mut fields = serde_json::Map::new();
        fields.insert("L".to_owned(), deep);
        let doc = Value::Object(fields);
        assert_eq!(
            Filter::parse("L.A == found")
                .and_then(|f| f.matches(&doc))
                .ok(),
            Some(true)
        );
    }

    /// Tiny xorshift generator, so the fuzz test needs no dependency and is reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % (n as u64)).unwrap_or(0)
        }
    }

    /// Builds a random, valid expression of the shapes Consul users write.
    fn random_expr(rng: &mut Rng, depth: usize) -> String {
        const SELECTORS: &[&str] = &[
            "Service.Service",
            "Service.Tags",
            "Checks.Status",
            "Checks.ServiceTags",
            "Node.Meta.os",
            r#"Node.Meta["rack-id"]"#,
            "Service.Port",
            "Service.EnableTagOverride",
            "Missing.Field",
            "Checks",
            "Service.Meta",
            "Nested.A",
            "ServiceTags",
            "not",
            "or",
        ];
        const VALUES: &[&str] = &[
            r#""web""#,
            "`passing`",
            "primary",
            "8080",
            "-1.5",
            "0",
            "true",
            r#""^w""#,
            r#""\u00e9""#,
            r#""""#,
            "Node.Meta.os",
        ];
        const OPS: &[&str] = &[
            "==",
            "!=",
            "contains",
            "not contains",
            "matches",
            "not matches",
            "is empty",
            "is not empty",
            "in",
            "not in",
        ];
        let pick = |rng: &mut Rng, list: &[&'static str]| list[rng.below(list.len())];
        match if depth == 0 { 0 } else { rng.below(6) } {
            0 | 1 => {
                let (sel, val) = (pick(rng, SELECTORS), pick(rng, VALUES));
                match pick(rng, OPS) {
                    op @ ("is empty" | "is not empty") => format!("{sel} {op}"),
                    op @ ("in" | "not in") => format!("{val} {op} {sel}"),
                    op => format!("{sel} {op} {val}"),
                }
            }
            2 => format!("not {}", random_expr(rng, depth - 1)),
            3 => format!("( {} )", random_expr(rng, depth - 1)),
            4 => format!(
                "{} and {}",
                random_expr(rng, depth - 1),
                random_expr(rng, depth - 1)
            ),
            _ => format!(
                "{} or {}",
                random_expr(rng, depth - 1),
                random_expr(rng, depth - 1)
            ),
        }
    }

    #[test]
    fn garbage_never_panics() {
        const NOISE: &[char] = &[
            '(', ')', '[', ']', '"', '`', '\\', ' ', '\n', '=', '!', '.', '-', '0', '9', 'a', 'Z',
            '_', 'é', '\u{0}', '*', '+', '?', '{', '}', '^', '$', '|',
        ];
        let docs = [
            health_entry(),
            catalog_entry(),
            json!(null),
            json!([1, "a", [], {}]),
            json!("s"),
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut parsed = 0;
        for round in 0..30_000 {
            let expr: String = if round % 4 == 0 {
                // Arbitrary characters, biased to ASCII.
                (0..rng.below(40))
                    .map(|_| {
                        let code = if rng.below(4) == 0 {
                            rng.below(0x2_0000)
                        } else {
                            rng.below(0x80)
                        };
                        char::from_u32(u32::try_from(code).unwrap_or(0)).unwrap_or('?')
                    })
                    .collect()
            } else {
                let valid = random_expr(&mut rng, 3);
                if round % 4 == 1 {
                    // Generated expressions are valid and must parse.
                    if let Err(err) = Filter::parse(&valid) {
                        panic!("{valid:?} does not parse: {err}");
                    }
                }
                // Mutate: delete, insert or duplicate characters.
                let mut chars: Vec<char> = valid.chars().collect();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(chars.len() + 1);
                    match rng.below(3) {
                        0 if at < chars.len() => {
                            chars.remove(at);
                        }
                        1 => chars.insert(at, NOISE[rng.below(NOISE.len())]),
                        _ => {
                            let end = (at + rng.below(6)).min(chars.len());
                            let piece: Vec<char> = chars[at..end].to_vec();
                            chars.splice(at..at, piece);
                        }
                    }
                }
                chars.into_iter().collect()
            };
            if let Ok(filter) = Filter::parse(&expr) {
                parsed += 1;
                for doc in &docs {
                    let _ = filter.matches(doc);
                }
            }
        }
        // Many mutants stay valid; if none did, the evaluation half would prove nothing.
        assert!(parsed > 3_000, "only {parsed} random expressions parsed");
    }

    #[test]
    fn filters_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone + fmt::Debug>() {}
        assert_send_sync::<Filter>();
        assert_send_sync::<FilterError>();
        let filter: Filter = "Service.Port == 8080"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(filter.as_str(), "Service.Port == 8080");
    }
}
