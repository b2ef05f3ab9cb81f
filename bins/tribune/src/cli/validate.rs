//! `validate FILE_OR_DIRECTORY...`: Consul's `consul validate`. The files and
//! directories are loaded exactly as `agent -config-file`/`-config-dir` would
//! load them (same parser, merge and checks), without starting anything.
//!
//! A key Consul does not define fails validation, as in Consul; the agent itself
//! only warns about such keys (see `tribune_agent::config`), because test helpers
//! write them. Other warnings (deprecated keys, skipped files) are printed to
//! stderr and do not fail.

use std::path::Path;

use tribune_agent::config::{self, Warning};
use tribune_types::goflag::FlagSet;

use super::{help_text, parse, Ctx};

const HELP: &str = r#"Usage: tribune validate [options] FILE_OR_DIRECTORY...

  Performs a thorough sanity test on Consul configuration files. For each file
  or directory given, the validate command will attempt to parse the contents
  just as the "consul agent" command would, and catch any errors.

  This is useful to do a test of the configuration only, without actually
  starting the agent. This performs all of the validation the agent would, so
  this should be given the complete set of configuration files that are going
  to be loaded by the agent. This command cannot operate on partial
  configuration fragments since those won't pass the full agent validation.

  Returns 0 if the configuration is valid, or 1 if there are problems."#;

/// `validate [-quiet] [-config-format=json|hcl] FILE_OR_DIRECTORY...`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = FlagSet::new("validate")
        .bool(
            "quiet",
            "When given, a successful run will produce no output.",
        )
        .value(
            "config-format",
            "Config files are in this format irrespective of their extension. Must be 'hcl' or 'json'",
        );
    let p = match parse(&flags, args, HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if p.args.is_empty() {
        ctx.error("Must specify at least one config file or directory");
        ctx.error("");
        ctx.error(&help_text(HELP, &flags));
        return 1;
    }
    let mut agent_args: Vec<String> = p
        .args
        .iter()
        .map(|path| {
            if Path::new(path).is_dir() {
                format!("-config-dir={path}")
            } else {
                format!("-config-file={path}")
            }
        })
        .collect();
    if let Some(format) = p.get("config-format").filter(|f| !f.is_empty()) {
        agent_args.push(format!("-config-format={format}"));
    }
    let parsed = match config::agent_flags().parse(&agent_args) {
        Ok(parsed) => parsed,
        Err(e) => {
            ctx.error(&format!("Config validation failed: {e}"));
            return 1;
        }
    };
    let cfg = match config::load(&parsed) {
        Ok(cfg) => cfg,
        Err(e) => {
            ctx.error(&format!("Config validation failed: {e}"));
            return 1;
        }
    };
    let unknown: Vec<String> = cfg
        .warnings
        .iter()
        .filter_map(|w| match w {
            Warning::UnknownKey { origin, key } => {
                Some(format!("{origin}: invalid config key {key}"))
            }
            _ => None,
        })
        .collect();
    if !unknown.is_empty() {
        ctx.error(&format!("Config validation failed: {}", unknown.join(", ")));
        return 1;
    }
    if !p.is_set("quiet") {
        for w in &cfg.warnings {
            ctx.error(&w.to_string());
        }
        ctx.info("Configuration is valid!");
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::run_env;

    #[tokio::test]
    async fn valid_invalid_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let good = dir.path().join("good.hcl");
        std::fs::write(
            &good,
            format!(
                "data_dir = \"{}\"\nserver = true\nbootstrap_expect = 1\nservice {{\n  name = \"web\"\n  port = 80\n}}\n",
                data.display()
            ),
        )
        .unwrap();
        let path = good.display().to_string();
        let r = run_env(&[], "validate", &[&path], b"").await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "Configuration is valid!\n"),
            "{}",
            r.err
        );
        let r = run_env(&[], "validate", &["-quiet", &path], b"").await;
        assert_eq!((r.code, r.out.as_str()), (0, ""));

        // A directory is read as -config-dir reads it; a bad value fails.
        let conf = dir.path().join("conf.d");
        std::fs::create_dir(&conf).unwrap();
        std::fs::copy(&good, conf.join("a.hcl")).unwrap();
        std::fs::write(conf.join("b.json"), r#"{"ports": {"http": "not a port"}}"#).unwrap();
        let conf = conf.display().to_string();
        let r = run_env(&[], "validate", &[&conf], b"").await;
        assert_eq!(r.code, 1);
        assert!(r.err.starts_with("Config validation failed: "), "{}", r.err);
        assert!(r.err.contains("b.json"), "{}", r.err);

        let typo = dir.path().join("typo.json");
        std::fs::write(
            &typo,
            format!(r#"{{"data_dir": "{}", "sevrer": true}}"#, data.display()),
        )
        .unwrap();
        let r = run_env(&[], "validate", &[&typo.display().to_string()], b"").await;
        assert_eq!(r.code, 1, "{}", r.out);
        assert!(r.err.contains("invalid config key sevrer"), "{}", r.err);

        let r = run_env(&[], "validate", &[], b"").await;
        assert_eq!(r.code, 1);
        assert!(r
            .err
            .starts_with("Must specify at least one config file or directory"));
    }
}
