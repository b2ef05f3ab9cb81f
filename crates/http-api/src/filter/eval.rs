//! Evaluation of a parsed filter against one JSON result object, following go-bexpr's
//! rules as described in the parent module's documentation.

use serde_json::{Number, Value};
use tribune_types::goflag::parse_go_bool;

use super::parse::{Expr, MatchExpr, Test};
use super::{FilterError, JsonKind};

/// Evaluates `expr` against `datum`. `and`/`or` stop at the first operand that decides
/// them, and an error from an operand that is evaluated ends the evaluation, as in go-bexpr.
pub(super) fn eval(expr: &Expr, datum: &Value) -> Result<bool, FilterError> {
    match expr {
        Expr::Or(items) => {
            for item in items {
                if eval(item, datum)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Expr::And(items) => {
            for item in items {
                if !eval(item, datum)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Expr::Not(inner) => eval(inner, datum).map(|matched| !matched),
        Expr::Match(m) => eval_match(m, datum),
    }
}

/// Follows the selector from `datum` and applies the test where it ends.
///
/// Lists met before the selector's end are passed through: the rest of the selector is
/// followed into every element and the match holds if it holds for any of them (go-bexpr's
/// implicit "any"). The walk keeps its own stack rather than recursing, so deeply nested
/// lists cannot exhaust the thread's stack; elements are visited in order, so the first
/// error met is the one go-bexpr would report.
fn eval_match(m: &MatchExpr, datum: &Value) -> Result<bool, FilterError> {
    let path = &m.selector.path;
    let mut pending: Vec<(&Value, usize)> = vec![(datum, 0)];
    while let Some((value, depth)) = pending.pop() {
        let Some(segment) = path.get(depth) else {
            if apply(m, value)? {
                return Ok(true);
            }
            continue;
        };
        match value {
            Value::Object(fields) => match fields.get(segment) {
                None | Some(Value::Null) => {
                    if absent(&m.test) {
                        return Ok(true);
                    }
                }
                Some(child) => pending.push((child, depth + 1)),
            },
            Value::Array(items) => pending.extend(items.iter().rev().map(|item| (item, depth))),
            Value::Null => {
                if absent(&m.test) {
                    return Ok(true);
                }
            }
            Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                return Err(FilterError::NotSelectable {
                    selector: path.get(..=depth).unwrap_or(path).join("."),
                    kind: JsonKind::of(value),
                });
            }
        }
    }
    Ok(false)
}

/// The outcome of a test on a value that is not there (a missing key or `null`): nothing
/// equals, contains or matches it, and it is empty. This is go-bexpr's rule for a missing
/// map key; it also gives Go's nil slices and maps, which render as `null`, the answers
/// go-bexpr gives for them (empty, containing nothing).
fn absent(test: &Test) -> bool {
    match test {
        Test::Equal { negate, .. }
        | Test::Contains { negate, .. }
        | Test::Matches { negate, .. } => *negate,
        Test::Empty { negate } => !negate,
    }
}

/// Applies the test to the value the selector ends at.
fn apply(m: &MatchExpr, value: &Value) -> Result<bool, FilterError> {
    if value.is_null() {
        return Ok(absent(&m.test));
    }
    let outcome = match &m.test {
        Test::Equal {
            negate,
            value: want,
        } => equals(m, value, want, false)? != *negate,
        Test::Contains {
            negate,
            value: want,
        } => contains(m, value, want)? != *negate,
        Test::Empty { negate } => is_empty(m, value)? != *negate,
        Test::Matches { negate, pattern } => match value {
            Value::String(text) => pattern.is_match(text) != *negate,
            other => return Err(unsupported(m, JsonKind::of(other), false)),
        },
    };
    Ok(outcome)
}

/// `value == want`, with `want` read as the type of `value`. Only strings, numbers and
/// booleans can be compared (`in_list` says whether `value` is a list element, for the
/// error message).
fn equals(m: &MatchExpr, value: &Value, want: &str, in_list: bool) -> Result<bool, FilterError> {
    match value {
        Value::String(text) => Ok(text == want),
        Value::Bool(flag) => match parse_go_bool(want) {
            Some(wanted) => Ok(wanted == *flag),
            None => Err(coerce_failed(m, want, JsonKind::Bool)),
        },
        Value::Number(number) => {
            number_equals(number, want).ok_or_else(|| coerce_failed(m, want, JsonKind::Number))
        }
        Value::Null => Ok(false),
        Value::Array(_) | Value::Object(_) => Err(unsupported(m, JsonKind::of(value), in_list)),
    }
}

/// `want in value`: membership in a list, a key of an object, a substring of a string.
fn contains(m: &MatchExpr, value: &Value, want: &str) -> Result<bool, FilterError> {
    match value {
        Value::Array(items) => {
            for item in items {
                if equals(m, item, want, true)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Value::Object(fields) => Ok(fields.contains_key(want)),
        Value::String(text) => Ok(text.contains(want)),
        Value::Null => Ok(false),
        Value::Bool(_) | Value::Number(_) => Err(unsupported(m, JsonKind::of(value), false)),
    }
}

/// `value is empty`, for lists, objects and strings.
fn is_empty(m: &MatchExpr, value: &Value) -> Result<bool, FilterError> {
    match value {
        Value::Array(items) => Ok(items.is_empty()),
        Value::Object(fields) => Ok(fields.is_empty()),
        Value::String(text) => Ok(text.is_empty()),
        Value::Null => Ok(true),
        Value::Bool(_) | Value::Number(_) => Err(unsupported(m, JsonKind::of(value), false)),
    }
}

fn unsupported(m: &MatchExpr, kind: JsonKind, in_list: bool) -> FilterError {
    FilterError::UnsupportedOperator {
        selector: m.selector.dotted(),
        op: m.op(),
        kind,
        in_list,
    }
}

fn coerce_failed(m: &MatchExpr, value: &str, target: JsonKind) -> FilterError {
    FilterError::CoerceFailed {
        selector: m.selector.dotted(),
        value: value.to_owned(),
        target,
    }
}

/// Compares a JSON number with the text of a value: exactly when both are integers, as
/// floats otherwise. go-bexpr parses the value as the Go field's type (int, uint, float);
/// JSON does not say which that was (Go writes a whole float64 as `1`), so an integer
/// field also accepts a float value rather than failing. `None` if `text` is no number.
fn number_equals(number: &Number, text: &str) -> Option<bool> {
    if let Some(want) = parse_go_int(text) {
        if let Some(have) = number.as_i64() {
            return Some(i128::from(have) == want);
        }
        if let Some(have) = number.as_u64() {
            return Some(i128::from(have) == want);
        }
    }
    let want = parse_go_float(text)?;
    Some(number.as_f64() == Some(want))
}

/// Go's `strconv.ParseInt(text, 0, 64)` / `ParseUint(text, 0, 64)` combined: optional sign,
/// `0x`/`0o`/`0b`/leading-`0` base prefixes, `_` between digits; the result must fit an
/// int64 or a uint64.
fn parse_go_int(text: &str) -> Option<i128> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, text.get(1..)?),
        b'+' => (false, text.get(1..)?),
        _ => (false, text),
    };
    let (radix, digits, after_prefix) = match unsigned.as_bytes() {
        [b'0', b'x' | b'X', ..] => (16, unsigned.get(2..)?, true),
        [b'0', b'b' | b'B', ..] => (2, unsigned.get(2..)?, true),
        [b'0', b'o' | b'O', ..] => (8, unsigned.get(2..)?, true),
        [b'0', _, ..] => (8, unsigned.get(1..)?, true),
        _ => (10, unsigned, false),
    };
    let mut value: i128 = 0;
    let mut any_digit = false;
    // Go allows `_` only right after a base prefix or a digit, and not at the end.
    let mut underscore_ok = after_prefix;
    let mut ends_in_underscore = false;
    for ch in digits.chars() {
        if ch == '_' {
            if !underscore_ok {
                return None;
            }
            underscore_ok = false;
            ends_in_underscore = true;
            continue;
        }
        let digit = ch.to_digit(radix)?;
        value = value
            .checked_mul(i128::from(radix))?
            .checked_add(i128::from(digit))?;
        if value > i128::from(u64::MAX) {
            return None;
        }
        any_digit = true;
        underscore_ok = true;
        ends_in_underscore = false;
    }
    if !any_digit || ends_in_underscore {
        return None;
    }
    if negative {
        let value = -value;
        (value >= i128::from(i64::MIN)).then_some(value)
    } else {
        Some(value)
    }
}

/// Go's `strconv.ParseFloat(text, 64)`, as far as Rust's float syntax agrees with it
/// (decimal and exponent forms, `inf`, `nan`; not Go's hex floats or `_` separators).
fn parse_go_float(text: &str) -> Option<f64> {
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_integer_syntax() {
        let ok: [(&str, i128); 12] = [
            ("0", 0),
            ("42", 42),
            ("-42", -42),
            ("+7", 7),
            ("0x1F", 31),
            ("0b101", 5),
            ("0o17", 15),
            ("017", 15),
            ("0_7", 7),
            ("1_000", 1000),
            ("18446744073709551615", i128::from(u64::MAX)),
            ("-9223372036854775808", i128::from(i64::MIN)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_go_int(text), Some(want), "{text}");
        }
        let bad = [
            "",
            "-",
            "0x",
            "08",
            "1_",
            "_1",
            "1__0",
            "1.5",
            "abc",
            "18446744073709551616",
            "-9223372036854775809",
            " 1",
            "0x_",
        ];
        for text in bad {
            assert_eq!(parse_go_int(text), None, "{text}");
        }
    }

    #[test]
    fn go_bool_syntax() {
        assert_eq!(parse_go_bool("T"), Some(true));
        assert_eq!(parse_go_bool("False"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(parse_go_bool("tRUE"), None);
    }

    #[test]
    fn numbers_compare_across_int_and_float() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
            _ => unreachable!("test helper takes numbers"),
        };
        assert_eq!(
            number_equals(&n(serde_json::json!(8080)), "8080"),
            Some(true)
        );
        assert_eq!(
            number_equals(&n(serde_json::json!(8080)), "0x1F90"),
            Some(true)
        );
        assert_eq!(number_equals(&n(serde_json::json!(1)), "1.0"), Some(true));
        assert_eq!(number_equals(&n(serde_json::json!(1.5)), "1.5"), Some(true));
        assert_eq!(number_equals(&n(serde_json::json!(1.5)), "1"), Some(false));
        assert_eq!(
            number_equals(&n(serde_json::json!(u64::MAX)), "18446744073709551615"),
            Some(true)
        );
        assert_eq!(number_equals(&n(serde_json::json!(-3)), "-3"), Some(true));
        assert_eq!(number_equals(&n(serde_json::json!(3)), "three"), None);
    }
}
