//! Prepared query templates (`Template.Type = "name_prefix_match"`): every string
//! of the query's `Service` may interpolate `${name.full}`, `${name.prefix}`,
//! `${name.suffix}`, `${match(N)}` (a group of `Template.Regexp` matched against the
//! looked-up name) and `${agent.segment}`; `$${` is a literal `${`.
//!
//! Consul evaluates these with HashiCorp's HIL language. Templates in the wild use
//! exactly these variables and the `match` function, so that is what is parsed;
//! anything else is refused when the template is written, not when it is used.

use super::known_template_kind;
use regex::Regex;
use tribune_types::model::query::{PreparedQuery, ServiceQuery};

/// A template Consul's `Compile` or `Render` refuses; the texts are Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TemplateError {
    /// Not `name_prefix_match`.
    #[error("Bad Template.Type '{0}'")]
    Type(String),
    /// A string that does not parse.
    #[error("Bad format '{text}' in Service{path}: {reason}")]
    Format {
        text: String,
        path: String,
        reason: String,
    },
    /// An interpolation that cannot be evaluated.
    #[error("Bad evaluation for '{text}' in Service{path}: {reason}")]
    Evaluation {
        text: String,
        path: String,
        reason: String,
    },
    /// `Template.Regexp` does not compile.
    #[error("Bad Regexp: {0}")]
    Regexp(String),
}

/// One interpolation, or why it cannot be evaluated (found when rendering, as
/// Consul finds unknown variables then, not when parsing).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    Full,
    Prefix,
    Suffix,
    Segment,
    Match(i64),
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Var(Var),
}

/// Splits `s` into literal text and interpolations; `Err` is a syntax error.
fn parse(s: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        lit.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            lit.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| "expected \"}\" to end the interpolation".to_owned())?;
            if !lit.is_empty() {
                out.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            out.push(Piece::Var(variable(tail[..end].trim())?));
            rest = &tail[end + 1..];
        } else {
            lit.push('$');
            rest = &after[1..];
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

/// One `${...}`. Only the variables and the function templates are documented
/// with are known; anything else (HIL's arithmetic, other functions) is refused
/// when it would be evaluated.
fn variable(expr: &str) -> Result<Var, String> {
    Ok(match expr {
        "" => return Err("empty interpolation".into()),
        "name.full" => Var::Full,
        "name.prefix" => Var::Prefix,
        "name.suffix" => Var::Suffix,
        "agent.segment" => Var::Segment,
        _ => match expr.split_once('(') {
            Some((func, args)) => {
                let func = func.trim();
                let Some(arg) = args.trim_end().strip_suffix(')') else {
                    return Err(format!("expected \")\" to end the call of {func}"));
                };
                match (func, arg.trim().parse::<i64>()) {
                    ("match", Ok(n)) => Var::Match(n),
                    ("match", Err(_)) => Var::Unknown(format!(
                        "match: argument must be an integer, got {:?}",
                        arg.trim()
                    )),
                    _ => Var::Unknown(format!("unknown function called: {func}")),
                }
            }
            None if expr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) =>
            {
                Var::Unknown(format!("unknown variable accessed: {expr}"))
            }
            None => Var::Unknown(format!(
                "unsupported expression {expr:?} (templates here know name.full, name.prefix, \
                 name.suffix, agent.segment and match(N))"
            )),
        },
    })
}

/// Calls `f` with each interpolated string of `svc` and its path as Consul's
/// messages name it (`.Tags[1]`, `.NodeMeta[rack]`). Map keys are not interpolated.
fn walk(
    svc: &mut ServiceQuery,
    f: &mut dyn FnMut(&str, &mut String) -> Result<(), TemplateError>,
) -> Result<(), TemplateError> {
    f(".Service", &mut svc.service)?;
    f(".SamenessGroup", &mut svc.sameness_group)?;
    for (i, dc) in svc.failover.datacenters.iter_mut().flatten().enumerate() {
        f(&format!(".Failover.Datacenters[{i}]"), dc)?;
    }
    for (i, t) in svc.failover.targets.iter_mut().flatten().enumerate() {
        f(&format!(".Failover.Targets[{i}].Peer"), &mut t.peer)?;
        f(
            &format!(".Failover.Targets[{i}].Datacenter"),
            &mut t.datacenter,
        )?;
    }
    for (i, id) in svc.ignore_check_ids.iter_mut().flatten().enumerate() {
        f(&format!(".IgnoreCheckIDs[{i}]"), id)?;
    }
    f(".Near", &mut svc.near)?;
    for (i, tag) in svc.tags.iter_mut().flatten().enumerate() {
        f(&format!(".Tags[{i}]"), tag)?;
    }
    for (k, v) in svc.node_meta.iter_mut().flatten() {
        f(&format!(".NodeMeta[{k}]"), v)?;
    }
    for (k, v) in svc.service_meta.iter_mut().flatten() {
        f(&format!(".ServiceMeta[{k}]"), v)?;
    }
    f(".Peer", &mut svc.peer)
}

fn parsed(text: &str, path: &str) -> Result<Vec<Piece>, TemplateError> {
    parse(text).map_err(|reason| TemplateError::Format {
        text: text.to_owned(),
        path: path.to_owned(),
        reason,
    })
}

/// Compiled template regexps by pattern. Bounded: past [`REGEX_CACHE_MAX`]
/// patterns (deleted templates' among them) it starts afresh.
static REGEX_CACHE: parking_lot::Mutex<Option<std::collections::HashMap<String, Regex>>> =
    parking_lot::Mutex::new(None);
const REGEX_CACHE_MAX: usize = 256;

fn cached_regex(pattern: &str) -> Result<Regex, TemplateError> {
    let mut cache = REGEX_CACHE.lock();
    let map = cache.get_or_insert_with(Default::default);
    if let Some(re) = map.get(pattern) {
        // A clone shares the compiled program.
        return Ok(re.clone());
    }
    let re = Regex::new(pattern).map_err(|e| TemplateError::Regexp(e.to_string()))?;
    if map.len() >= REGEX_CACHE_MAX {
        map.clear();
    }
    map.insert(pattern.to_owned(), re.clone());
    Ok(re)
}

/// A template checked and ready to render.
#[derive(Debug)]
pub(crate) struct Template<'a> {
    query: &'a PreparedQuery,
    regexp: Option<Regex>,
}

impl<'a> Template<'a> {
    /// Checks the type, every string's syntax and the regexp, then renders once
    /// with the template's own name, as Consul's `Compile` does.
    pub(crate) fn compile(query: &'a PreparedQuery) -> Result<Self, TemplateError> {
        let kind = &query.template.kind;
        if !known_template_kind(kind) {
            return Err(TemplateError::Type(kind.clone()));
        }
        let mut svc = query.service.clone();
        walk(&mut svc, &mut |path, s| parsed(s, path).map(drop))?;
        let tpl = Template::stored(query)?;
        tpl.render(&query.name, "")?;
        Ok(tpl)
    }

    /// A template that [`Template::compile`] accepted when it was written:
    /// lookups (every DNS question and API call naming it) only need its regexp,
    /// which comes from a cache rather than being compiled each time.
    pub(crate) fn stored(query: &'a PreparedQuery) -> Result<Self, TemplateError> {
        let pattern = &query.template.regexp;
        let regexp = if pattern.is_empty() {
            None
        } else {
            Some(cached_regex(pattern)?)
        };
        Ok(Template { query, regexp })
    }

    /// The query for the looked-up `name`: its `Service` strings interpolated,
    /// empty tags dropped if asked.
    pub(crate) fn render(&self, name: &str, segment: &str) -> Result<PreparedQuery, TemplateError> {
        let groups: Vec<String> = self
            .regexp
            .as_ref()
            .and_then(|re| re.captures(name))
            .map(|caps| {
                caps.iter()
                    .map(|g| g.map_or_else(String::new, |m| m.as_str().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let prefix = self.query.name.as_str();
        // Consul trims the prefix as written, so a name in other case keeps it.
        let suffix = name.strip_prefix(prefix).unwrap_or(name);
        let mut out = self.query.clone();
        walk(&mut out.service, &mut |path, s| {
            let mut value = String::new();
            for piece in parsed(s, path)? {
                match piece {
                    Piece::Lit(l) => value.push_str(&l),
                    Piece::Var(Var::Full) => value.push_str(name),
                    Piece::Var(Var::Prefix) => value.push_str(prefix),
                    Piece::Var(Var::Suffix) => value.push_str(suffix),
                    Piece::Var(Var::Segment) => value.push_str(segment),
                    Piece::Var(Var::Match(i)) => {
                        let group = usize::try_from(i).ok().and_then(|i| groups.get(i));
                        value.push_str(group.map_or("", String::as_str));
                    }
                    Piece::Var(Var::Unknown(reason)) => {
                        return Err(TemplateError::Evaluation {
                            text: s.clone(),
                            path: path.to_owned(),
                            reason,
                        })
                    }
                }
            }
            *s = value;
            Ok(())
        })?;
        if self.query.template.remove_empty_tags {
            let tags = out.service.tags.take().unwrap_or_default();
            out.service.tags = Some(tags.into_iter().filter(|t| !t.is_empty()).collect());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_types::model::query::{QueryTemplate, TEMPLATE_NAME_PREFIX_MATCH};

    fn tpl(name: &str, regexp: &str, service: &str, tags: &[&str]) -> PreparedQuery {
        PreparedQuery {
            id: "x".into(),
            name: name.into(),
            template: QueryTemplate {
                kind: TEMPLATE_NAME_PREFIX_MATCH.into(),
                regexp: regexp.into(),
                remove_empty_tags: false,
            },
            service: ServiceQuery {
                service: service.into(),
                tags: Some(tags.iter().map(|t| (*t).to_owned()).collect()),
                ..ServiceQuery::default()
            },
            ..PreparedQuery::default()
        }
    }

    #[test]
    fn renders_consuls_documented_example() {
        let q = tpl(
            "geo-db",
            "^geo-db-(.*?)-([^\\-]+?)$",
            "mysql-${match(1)}",
            &[
                "${match(2)}",
                "${name.suffix}",
                "${name.full}",
                "${name.prefix}",
                "$${lit}",
            ],
        );
        let t = Template::compile(&q).expect("compiles");
        let r = t.render("geo-db-customer-primary", "").expect("renders");
        assert_eq!(r.service.service, "mysql-customer");
        assert_eq!(
            r.service.tags.as_deref().unwrap_or_default(),
            [
                "primary",
                "-customer-primary",
                "geo-db-customer-primary",
                "geo-db",
                "${lit}"
            ]
        );
        // Out-of-range groups and a non-matching name interpolate nothing.
        let r = t.render("geo-db", "").expect("renders");
        assert_eq!(r.service.service, "mysql-");
    }

    #[test]
    fn suffix_is_trimmed_case_sensitively_and_empty_tags_can_go() {
        let mut q = tpl("Web-", "", "${name.suffix}", &["", "${match(1)}", "a"]);
        let t = Template::compile(&q).expect("compiles");
        assert_eq!(
            t.render("web-x", "").expect("renders").service.service,
            "web-x"
        );
        assert_eq!(t.render("Web-x", "").expect("renders").service.service, "x");
        q.template.remove_empty_tags = true;
        let t = Template::compile(&q).expect("compiles");
        let r = t.render("Web-x", "").expect("renders");
        assert_eq!(r.service.tags, Some(vec!["a".to_owned()]));
    }

    #[test]
    fn bad_templates_are_refused_with_consuls_words() {
        let err = |q: &PreparedQuery| Template::compile(q).err().map(|e| e.to_string());
        let mut q = tpl("a", "", "${nope}", &[]);
        assert_eq!(
            err(&q).as_deref(),
            Some(
                "Bad evaluation for '${nope}' in Service.Service: unknown variable accessed: nope"
            )
        );
        q.service.service = "${upper(name.full)}".into();
        assert!(err(&q).is_some_and(|e| e.ends_with("unknown function called: upper")));
        q.service.service = "${40 + 2}".into();
        assert!(err(&q).is_some_and(|e| e.starts_with("Bad evaluation for '${40 + 2}'")));
        q.service.service = "${name.full".into();
        assert!(
            err(&q).is_some_and(|e| e.starts_with("Bad format '${name.full' in Service.Service: "))
        );
        q.service.service = "x".into();
        q.template.regexp = "(".into();
        assert!(err(&q).is_some_and(|e| e.starts_with("Bad Regexp: ")));
        q.template.regexp = String::new();
        q.template.kind = "pattern_match".into();
        assert_eq!(
            err(&q).as_deref(),
            Some("Bad Template.Type 'pattern_match'")
        );
    }
}
