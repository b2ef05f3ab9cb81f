//! Parser for filter expressions: hand-written recursive descent that accepts exactly the
//! language of go-bexpr's PEG grammar (`grammar.peg`), reports failures the way its
//! generated parser does, and builds the tree [`super::eval`] walks.
//!
//! The grammar, as this file implements it (`_` is `[ \t\r\n]+`):
//!
//! ```text
//! Input      <- _? Or _? EOF
//! Or         <- And (_ "or" _ And)*
//! And        <- Not (_ "and" _ Not)*
//! Not        <- "not" _ Not / Group
//! Group      <- "(" _? Or _? ")" / Match
//! Match      <- Selector SelOp Value / Selector EmptyOp / Value InOp Selector
//! SelOp      <- _? "==" _? / _? "!=" _? / _ "contains" _ / _ "not" _ "contains" _
//!             / _ "matches" _ / _ "not" _ "matches" _
//! EmptyOp    <- _ "is" _ "empty" / _ "is" _ "not" _ "empty"
//! InOp       <- _ "in" _ / _ "not" _ "in" _
//! Selector   <- Ident ("." Ident / "[" _? String _? "]")*
//! Ident      <- [a-zA-Z] [a-zA-Z0-9_]*
//! Value      <- Selector / Number / String
//! Number     <- "-"? ("0" / [1-9][0-9]*) ("." [0-9]+)? &(_ / EOF / ")")
//! String     <- "`" (!"`" .)* "`" / "\"" (!"\"" .)* "\""
//! ```
//!
//! PEG alternatives are ordered and backtrack, so the functions below try them in the
//! grammar's order and restore the position on failure. Where the grammar re-parses the
//! same text in a later alternative (the `Or`/`And` right recursion, the three `Match`
//! forms), the code parses once and continues, which accepts the same inputs without the
//! exponential re-parsing a literal transcription would do on nested parentheses.
//!
//! Failure reporting follows the generated parser: every terminal that fails to match is
//! noted with its position, only the ones at the furthest position are kept, and they
//! become the `expected:` list. The grammar's explicit error rules (unterminated string,
//! unmatched parenthesis, ...) take precedence over that list, as they do in go-bexpr.

use regex::Regex;

use super::{Expected, FilterError, GrammarRule, MatchOp, Position, SyntaxProblem};

/// Deepest nesting of parentheses accepted (see `Filter::MAX_NESTING`).
pub(super) const MAX_NESTING: usize = 64;

/// Regular expressions larger than this (compiled) are refused, so that a filter cannot
/// make the server build an enormous automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The whitespace class, displayed as in the grammar.
const WS: &str = "[ \\t\\r\\n]";

/// A parsed expression.
#[derive(Clone, Debug)]
pub(super) enum Expr {
    /// True if any operand is (evaluated left to right, stopping at the first true).
    Or(Vec<Expr>),
    /// True if every operand is (evaluated left to right, stopping at the first false).
    And(Vec<Expr>),
    /// The negation of the operand.
    Not(Box<Expr>),
    /// A single match.
    Match(MatchExpr),
}

impl Expr {
    /// The first segment of the first selector whose first segment is not in `fields`.
    pub(super) fn first_selector_outside<'a>(&'a self, fields: &[&str]) -> Option<&'a str> {
        match self {
            Expr::Or(items) | Expr::And(items) => {
                items.iter().find_map(|e| e.first_selector_outside(fields))
            }
            Expr::Not(inner) => inner.first_selector_outside(fields),
            Expr::Match(m) => m
                .selector
                .path
                .first()
                .map(String::as_str)
                .filter(|first| !fields.contains(first)),
        }
    }
}

/// `selector <op> value`.
#[derive(Clone, Debug)]
pub(super) struct MatchExpr {
    /// What to look at.
    pub(super) selector: Selector,
    /// What to check about it.
    pub(super) test: Test,
}

impl MatchExpr {
    /// The operator as written, for error messages.
    pub(super) fn op(&self) -> MatchOp {
        match &self.test {
            Test::Equal { negate: false, .. } => MatchOp::Equal,
            Test::Equal { negate: true, .. } => MatchOp::NotEqual,
            Test::Contains { negate: false, .. } => MatchOp::In,
            Test::Contains { negate: true, .. } => MatchOp::NotIn,
            Test::Empty { negate: false } => MatchOp::IsEmpty,
            Test::Empty { negate: true } => MatchOp::IsNotEmpty,
            Test::Matches { negate: false, .. } => MatchOp::Matches,
            Test::Matches { negate: true, .. } => MatchOp::NotMatches,
        }
    }
}

/// The check a match performs; each carries exactly the operand it needs, so evaluation
/// never meets an operator without its value or a `matches` without its compiled pattern.
#[derive(Clone, Debug)]
pub(super) enum Test {
    /// `==` (or `!=` when `negate`), against the value's raw text.
    Equal { negate: bool, value: String },
    /// `in`/`contains` (or their `not` forms).
    Contains { negate: bool, value: String },
    /// `is empty` (or `is not empty`).
    Empty { negate: bool },
    /// `matches` (or `not matches`).
    Matches { negate: bool, pattern: Regex },
}

/// A dotted path of field names and map keys.
#[derive(Clone, Debug)]
pub(super) struct Selector {
    /// The segments, unquoted.
    pub(super) path: Vec<String>,
}

impl Selector {
    /// The selector's text as go-bexpr prints it: segments joined by dots.
    pub(super) fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// A value operand and where it starts.
struct RawValue {
    text: String,
    offset: usize,
}

/// Parses a whole expression.
pub(super) fn parse(src: &str) -> Result<Expr, FilterError> {
    let mut p = Parser::new(src);
    p.opt_ws();
    let tree = p.or_expr();
    let complete = tree.is_some() && {
        p.opt_ws();
        p.eof()
    };
    // Precedence of failures: go-bexpr parses before it validates, and its parser prefers
    // the grammar's own error rules over the generic "no match" report.
    if let Some(offset) = p.too_deep {
        return Err(FilterError::TooDeep {
            position: position(src, offset),
            limit: MAX_NESTING,
        });
    }
    if let Some((offset, rule, problem)) = p.problem {
        return Err(FilterError::Syntax {
            position: position(src, offset),
            rule,
            problem,
        });
    }
    match tree {
        Some(tree) if complete => match p.regex_error {
            Some((offset, pattern, source)) => Err(FilterError::InvalidRegex {
                position: position(src, offset),
                pattern,
                source,
            }),
            None => Ok(tree),
        },
        _ => Err(p.no_match()),
    }
}

/// Converts a byte offset into a [`Position`], counting columns in characters and giving a
/// newline the position of the line it opens (column 0), as go-bexpr's parser does.
fn position(src: &str, offset: usize) -> Position {
    let mut line = 1;
    let mut column = 0;
    for (i, ch) in src.char_indices() {
        if i > offset {
            break;
        }
        column += 1;
        if ch == '\n' {
            line += 1;
            column = 0;
        }
    }
    if offset >= src.len() {
        // The end of input is one column past the last character.
        column += 1;
    }
    Position {
        line,
        column,
        offset,
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alpha(b: u8) -> bool {
    b.is_ascii_alphabetic()
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

fn is_nonzero_digit(b: u8) -> bool {
    matches!(b, b'1'..=b'9')
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Furthest offset at which a terminal failed, and the terminals that failed there.
    fail_pos: usize,
    expected: Vec<Expected>,
    /// The first of the grammar's explicit error rules to fire.
    problem: Option<(usize, GrammarRule, SyntaxProblem)>,
    /// The first `matches` pattern that failed to compile.
    regex_error: Option<(usize, String, regex::Error)>,
    /// Current parenthesis depth, and where it first went over the limit.
    nesting: usize,
    too_deep: Option<usize>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            fail_pos: 0,
            expected: Vec::new(),
            problem: None,
            regex_error: None,
            nesting: 0,
            too_deep: None,
        }
    }

    // ---- failure bookkeeping ----

    fn note(&mut self, at: usize, what: Expected) {
        if at < self.fail_pos {
            return;
        }
        if at > self.fail_pos {
            self.fail_pos = at;
            self.expected.clear();
        }
        if !self.expected.contains(&what) {
            self.expected.push(what);
        }
    }

    fn report(&mut self, at: usize, rule: GrammarRule, problem: SyntaxProblem) {
        if self.problem.is_none() {
            self.problem = Some((at, rule, problem));
        }
    }

    fn no_match(&self) -> FilterError {
        let mut expected = self.expected.clone();
        // go-bexpr's parser sorts the list as strings and puts EOF last.
        expected.sort_by_key(|e| (*e == Expected::EndOfInput, e.to_string()));
        FilterError::NoMatch {
            position: position(self.src, self.fail_pos),
            expected,
        }
    }

    // ---- terminals ----

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn lit(&mut self, text: &'static str) -> bool {
        if self.rest().starts_with(text.as_bytes()) {
            self.pos += text.len();
            true
        } else {
            self.note(self.pos, Expected::Literal(text));
            false
        }
    }

    fn class(&mut self, name: &'static str, test: fn(u8) -> bool) -> bool {
        match self.peek() {
            Some(b) if test(b) => {
                self.pos += 1;
                true
            }
            _ => {
                self.note(self.pos, Expected::CharClass(name));
                false
            }
        }
    }

    /// `class*`; like the generated parser, notes the failing attempt that ends the run.
    fn class_run(&mut self, name: &'static str, test: fn(u8) -> bool) {
        while self.class(name, test) {}
    }

    /// `_`: one or more whitespace characters.
    fn ws(&mut self) -> bool {
        if !self.class(WS, is_ws) {
            return false;
        }
        self.class_run(WS, is_ws);
        true
    }

    /// `_?`
    fn opt_ws(&mut self) {
        self.class_run(WS, is_ws);
    }

    /// `EOF`, i.e. `!.`: when input remains, "end of input" is what was wanted here.
    fn eof(&mut self) -> bool {
        if self.pos >= self.bytes.len() {
            true
        } else {
            self.note(self.pos, Expected::EndOfInput);
            false
        }
    }

    /// Runs `f` as a sequence: on failure the position is restored.
    fn attempt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let start = self.pos;
        let out = f(self);
        if out.is_none() {
            self.pos = start;
        }
        out
    }

    // ---- expressions ----

    /// `Or <- And (_ "or" _ And)*`. The grammar's `And _ "or" _ Or / And` is right
    /// recursive; since `and`/`or` are associative and evaluated left to right either way,
    /// a flat list is equivalent and needs no recursion per operand.
    fn or_expr(&mut self) -> Option<Expr> {
        let first = self.and_expr()?;
        let mut items = vec![first];
        while let Some(next) = self.attempt(|p| {
            if p.ws() && p.lit("or") && p.ws() {
                p.and_expr()
            } else {
                None
            }
        }) {
            items.push(next);
        }
        Some(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::Or(items)
        })
    }

    /// `And <- Not (_ "and" _ Not)*`
    fn and_expr(&mut self) -> Option<Expr> {
        let first = self.not_expr()?;
        let mut items = vec![first];
        while let Some(next) = self.attempt(|p| {
            if p.ws() && p.lit("and") && p.ws() {
                p.not_expr()
            } else {
                None
            }
        }) {
            items.push(next);
        }
        Some(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::And(items)
        })
    }

    /// `Not <- "not" _ Not / Group`, without recursing once per `not`: collect the chain of
    /// `not _` prefixes, then try `Group` after the innermost one; if that fails, the
    /// innermost `not` must instead be read as the start of a selector named `not`, so back
    /// off one prefix and try again (which is what PEG backtracking does).
    fn not_expr(&mut self) -> Option<Expr> {
        let mut prefixes = Vec::new();
        loop {
            let start = self.pos;
            if self.lit("not") && self.ws() {
                prefixes.push(start);
            } else {
                self.pos = start;
                break;
            }
        }
        loop {
            if let Some(expr) = self.group_expr() {
                // An even number of `not`s cancels out (go-bexpr folds them the same way).
                return Some(if prefixes.len() % 2 == 1 {
                    Expr::Not(Box::new(expr))
                } else {
                    expr
                });
            }
            self.pos = prefixes.pop()?;
        }
    }

    /// `Group <- "(" _? Or _? ")" / Match / "(" _? Or _? !")" &{Unmatched parentheses}`
    fn group_expr(&mut self) -> Option<Expr> {
        let start = self.pos;
        if !self.lit("(") {
            return self.match_expr();
        }
        if self.nesting >= MAX_NESTING {
            if self.too_deep.is_none() {
                self.too_deep = Some(start);
            }
            self.pos = start;
            return None;
        }
        self.nesting += 1;
        self.opt_ws();
        let inner = self.or_expr();
        self.nesting -= 1;
        let Some(inner) = inner else {
            // All three alternatives fail: the first two at once ("(" cannot start a match),
            // the third because its `Or` is the one that just failed.
            self.pos = start;
            return None;
        };
        self.opt_ws();
        if self.lit(")") {
            return Some(inner);
        }
        self.report(
            self.pos,
            GrammarRule::Grouping,
            SyntaxProblem::UnmatchedParentheses,
        );
        self.pos = start;
        None
    }

    /// `Match <- Selector SelOp Value / Selector EmptyOp / Value InOp Selector
    ///          / Value InOp !Selector &{Invalid selector}`
    fn match_expr(&mut self) -> Option<Expr> {
        let start = self.pos;
        if let Some(selector) = self.selector() {
            let after_selector = self.pos;
            if let Some(m) = self.attempt(|p| {
                let op = p.selector_op()?;
                let value = p.value()?;
                Some(p.build(selector.clone(), op, Some(value)))
            }) {
                return Some(Expr::Match(m));
            }
            self.pos = after_selector;
            if let Some(op) = self.empty_op() {
                return Some(Expr::Match(self.build(selector, op, None)));
            }
        }
        self.pos = start;
        if let Some(value) = self.value() {
            if let Some(op) = self.in_op() {
                let before = self.pos;
                if let Some(selector) = self.selector() {
                    return Some(Expr::Match(self.build(selector, op, Some(value))));
                }
                self.pos = before;
                self.report(before, GrammarRule::Match, SyntaxProblem::InvalidSelector);
            }
        }
        self.pos = start;
        None
    }

    /// Assembles a match, compiling the pattern of `matches`.
    fn build(&mut self, selector: Selector, op: MatchOp, operand: Option<RawValue>) -> MatchExpr {
        let (raw, offset) = match operand {
            Some(v) => (v.text, v.offset),
            None => (String::new(), self.pos),
        };
        let test = match op {
            MatchOp::Equal | MatchOp::NotEqual => Test::Equal {
                negate: op == MatchOp::NotEqual,
                value: raw,
            },
            MatchOp::In | MatchOp::NotIn => Test::Contains {
                negate: op == MatchOp::NotIn,
                value: raw,
            },
            MatchOp::IsEmpty | MatchOp::IsNotEmpty => Test::Empty {
                negate: op == MatchOp::IsNotEmpty,
            },
            MatchOp::Matches | MatchOp::NotMatches => {
                let negate = op == MatchOp::NotMatches;
                match regex::RegexBuilder::new(&raw)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                {
                    Ok(pattern) => Test::Matches { negate, pattern },
                    Err(err) => {
                        // go-bexpr compiles patterns after parsing, so a syntax error later in
                        // the expression must still win: remember the failure, keep parsing
                        // with a stand-in test, and let `parse` refuse the whole filter.
                        if self.regex_error.is_none() {
                            self.regex_error = Some((offset, raw, err));
                        }
                        Test::Empty { negate }
                    }
                }
            }
        };
        MatchExpr { selector, test }
    }

    /// The operators that take a selector on the left and a value on the right.
    fn selector_op(&mut self) -> Option<MatchOp> {
        // `_? "==" _?` and `_? "!=" _?`
        for (text, op) in [("==", MatchOp::Equal), ("!=", MatchOp::NotEqual)] {
            if let Some(op) = self.attempt(|p| {
                p.opt_ws();
                if p.lit(text) {
                    p.opt_ws();
                    Some(op)
                } else {
                    None
                }
            }) {
                return Some(op);
            }
        }
        self.keyword_op(&[
            (&["contains"][..], MatchOp::In),
            (&["not", "contains"][..], MatchOp::NotIn),
            (&["matches"][..], MatchOp::Matches),
            (&["not", "matches"][..], MatchOp::NotMatches),
        ])
    }

    /// `_ "is" _ "empty"` / `_ "is" _ "not" _ "empty"` (no trailing whitespace required).
    fn empty_op(&mut self) -> Option<MatchOp> {
        for (words, op) in [
            (&["is", "empty"][..], MatchOp::IsEmpty),
            (&["is", "not", "empty"][..], MatchOp::IsNotEmpty),
        ] {
            if let Some(op) = self.attempt(|p| {
                for word in words {
                    if !(p.ws() && p.lit(word)) {
                        return None;
                    }
                }
                Some(op)
            }) {
                return Some(op);
            }
        }
        None
    }

    /// `_ "in" _` / `_ "not" _ "in" _`
    fn in_op(&mut self) -> Option<MatchOp> {
        self.keyword_op(&[
            (&["in"][..], MatchOp::In),
            (&["not", "in"][..], MatchOp::NotIn),
        ])
    }

    /// Tries each `_ word _ word ... _` form in order.
    fn keyword_op(&mut self, forms: &[(&[&'static str], MatchOp)]) -> Option<MatchOp> {
        forms.iter().find_map(|&(words, op)| {
            self.attempt(|p| {
                for word in words {
                    if !(p.ws() && p.lit(word)) {
                        return None;
                    }
                }
                if p.ws() {
                    Some(op)
                } else {
                    None
                }
            })
        })
    }

    // ---- selectors and values ----

    /// `Ident <- [a-zA-Z] [a-zA-Z0-9_]*`
    fn identifier(&mut self) -> Option<String> {
        let start = self.pos;
        if !self.class("[a-zA-Z]", is_alpha) {
            return None;
        }
        self.class_run("[a-zA-Z0-9_]", is_ident_char);
        self.src.get(start..self.pos).map(str::to_owned)
    }

    /// `Selector <- Ident ("." Ident / Index)*`
    fn selector(&mut self) -> Option<Selector> {
        let mut path = vec![self.identifier()?];
        loop {
            if let Some(field) = self.attempt(|p| if p.lit(".") { p.identifier() } else { None }) {
                path.push(field);
            } else if let Some(key) = self.index() {
                path.push(key);
            } else {
                return Some(Selector { path });
            }
        }
    }

    /// `Index <- "[" _? String _? "]" / "[" _? !String &{Invalid index}
    ///          / "[" _? String _? !"]" &{Unclosed index expression}`
    fn index(&mut self) -> Option<String> {
        let start = self.pos;
        if !self.lit("[") {
            return None;
        }
        self.opt_ws();
        let before_key = self.pos;
        let Some(key) = self.string() else {
            self.report(before_key, GrammarRule::Index, SyntaxProblem::InvalidIndex);
            self.pos = start;
            return None;
        };
        self.opt_ws();
        if self.lit("]") {
            return Some(key);
        }
        self.report(self.pos, GrammarRule::Index, SyntaxProblem::UnclosedIndex);
        self.pos = start;
        None
    }

    /// `Value <- Selector / Number / String`. A selector used as a value stands for its own
    /// dotted text, so bare words such as `passing` or `true` work as values.
    fn value(&mut self) -> Option<RawValue> {
        let offset = self.pos;
        let text = if let Some(selector) = self.selector() {
            selector.dotted()
        } else if let Some(number) = self.number() {
            number
        } else {
            self.string()?
        };
        Some(RawValue { text, offset })
    }

    /// `Number <- "-"? ("0" / [1-9][0-9]*) ("." [0-9]+)? &(_ / EOF / ")")`, or the
    /// "Invalid number literal" error when the digits run into anything else.
    fn number(&mut self) -> Option<String> {
        let start = self.pos;
        // The optional sign: a failed "-" is still noted, as the generated parser does.
        let _ = self.lit("-");
        if !(self.lit("0")
            || (self.class("[1-9]", is_nonzero_digit) && {
                self.class_run("[0-9]", is_digit);
                true
            }))
        {
            self.pos = start;
            return None;
        }
        let before_fraction = self.pos;
        if self.lit(".") && self.class("[0-9]", is_digit) {
            self.class_run("[0-9]", is_digit);
        } else {
            self.pos = before_fraction;
        }
        // The lookahead only checks; its failures are not what the user should be told
        // (the error rule below is).
        let ends_well = match self.peek() {
            None => true,
            Some(b) => is_ws(b) || b == b')',
        };
        if !ends_well {
            self.report(self.pos, GrammarRule::Number, SyntaxProblem::InvalidNumber);
            self.pos = start;
            return None;
        }
        self.src.get(start..self.pos).map(str::to_owned)
    }

    /// ``String <- "`" (!"`" .)* "`" / "\"" (!"\"" .)* "\""``, unquoted like Go's
    /// `strconv.Unquote`; a string still open at the end of input is an error.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        let quote = if self.lit("`") {
            b'`'
        } else if self.lit("\"") {
            b'"'
        } else {
            return None;
        };
        let body_start = self.pos;
        let Some(len) = self.rest().iter().position(|&b| b == quote) else {
            // `(!quote .)*` ran to the end; the grammar's error rule fires there.
            self.report(
                self.bytes.len(),
                GrammarRule::String,
                SyntaxProblem::UnterminatedString,
            );
            self.pos = start;
            return None;
        };
        self.pos = body_start + len + 1;
        // The quote is ASCII, so both ends are character boundaries.
        let body = self
            .src
            .get(body_start..body_start + len)
            .unwrap_or_default();
        if quote == b'`' {
            // Go drops carriage returns from raw strings.
            return Some(body.replace('\r', ""));
        }
        let text = unquote(body);
        if text.is_none() {
            // go-bexpr's parser records the failed unquote and carries on with an empty
            // string; the recorded error then fails the parse.
            self.report(start, GrammarRule::String, SyntaxProblem::InvalidString);
        }
        Some(text.unwrap_or_default())
    }
}

/// Decodes the body of a double-quoted Go string literal (no `"` inside, by construction).
/// `None` for what Go's `strconv.Unquote` rejects: a newline, a lone or unknown escape, a
/// short or invalid `\x`/`\u`/`\U`/octal escape, `\'`.
fn unquote(body: &str) -> Option<String> {
    if body.contains('\n') {
        return None;
    }
    if !body.contains('\\') {
        return Some(body.to_owned());
    }
    // Bytes, because `\x` and octal escapes produce single bytes, as in Go.
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let escape = *bytes.get(i)?;
        i += 1;
        match escape {
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'\\' => out.push(b'\\'),
            b'x' => {
                out.push(u8::try_from(digits(bytes, i, 2, 16)?).ok()?);
                i += 2;
            }
            b'u' | b'U' => {
                let width = if escape == b'u' { 4 } else { 8 };
                let ch = char::from_u32(digits(bytes, i, width, 16)?)?;
                i += width;
                let mut buf = [0; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            b'0'..=b'7' => {
                // Three octal digits in all, the first being `escape`.
                let value = digits(bytes, i - 1, 3, 8)?;
                out.push(u8::try_from(value).ok()?);
                i += 2;
            }
            _ => return None,
        }
    }
    // Escapes can spell bytes that are not UTF-8; Go would keep them, and such a value can
    // never equal a JSON string anyway, so the replacement character is harmless.
    Some(match String::from_utf8(out) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    })
}

/// Reads exactly `count` digits of `radix` at `at`.
fn digits(bytes: &[u8], at: usize, count: usize, radix: u32) -> Option<u32> {
    let run = bytes.get(at..at.checked_add(count)?)?;
    run.iter().try_fold(0u32, |acc, &b| {
        let digit = char::from(b).to_digit(radix)?;
        acc.checked_mul(radix)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquote_follows_go() {
        let ok = [
            ("plain", "plain"),
            (r"a\tb", "a\tb"),
            (r"\\", "\\"),
            (r"\x41\101\u00e9\U0001F600", "AAé😀"),
            (r"\xc3\xa9", "é"),
            (r"\a\b\f\v\r\n", "\u{7}\u{8}\u{c}\u{b}\r\n"),
        ];
        for (body, want) in ok {
            assert_eq!(unquote(body).as_deref(), Some(want), "{body}");
        }
        let bad = [
            r"\",
            r"\q",
            r"\'",
            r"\x4",
            r"\xg1",
            r"\u12",
            r"\ud800",
            r"\U00110000",
            r"\400",
            r"\18",
            "a\nb",
        ];
        for body in bad {
            assert_eq!(unquote(body), None, "{body}");
        }
    }

    #[test]
    fn positions_count_characters_and_lines() {
        assert_eq!(
            position("abc", 0),
            Position {
                line: 1,
                column: 1,
                offset: 0
            }
        );
        assert_eq!(
            position("abc", 3),
            Position {
                line: 1,
                column: 4,
                offset: 3
            }
        );
        assert_eq!(
            position("é x", 3),
            Position {
                line: 1,
                column: 3,
                offset: 3
            }
        );
        assert_eq!(
            position("a\nb", 2),
            Position {
                line: 2,
                column: 1,
                offset: 2
            }
        );
        assert_eq!(
            position("a\nb", 1),
            Position {
                line: 2,
                column: 0,
                offset: 1
            }
        );
    }
}
