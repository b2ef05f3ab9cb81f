//! `version [-format=pretty|json]`.
//!
//! The JSON form is what Consul's `sdk/testutil` parses (a semver `Version`) before it
//! starts an agent, so Tribune reports the Consul version whose API it implements and
//! names itself on an extra line of the pretty form only.
//!
//! The revision and build date come from `TRIBUNE_GIT_SHA` and `TRIBUNE_BUILD_DATE`
//! (RFC 3339, UTC) when set at compile time; otherwise the revision is empty and the
//! build date is the executable's modification time.

use std::time::UNIX_EPOCH;

use serde::Serialize;
use tribune_types::goflag::FlagSet;

use super::{parse, Ctx};

/// The Consul release whose HTTP API and CLI Tribune implements.
pub const CONSUL_VERSION: &str = "1.20.0";

/// Consul's RPC protocol versions: default, min, max.
const RPC: RpcVersion = RpcVersion {
    default: 2,
    min: 2,
    max: 3,
};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RpcVersion {
    default: u8,
    min: u8,
    max: u8,
}

/// Field order and names as Consul's `VersionInfo`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VersionInfo<'a> {
    version: &'a str,
    revision: &'a str,
    prerelease: &'a str,
    build_date: String,
    #[serde(rename = "RPC")]
    rpc: &'a RpcVersion,
}

const HELP: &str = "Usage: tribune version [options]

  Prints the Consul version this build is compatible with, and Tribune's own.";

/// `version`
pub(crate) fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = FlagSet::new("version").value("format", "Output format {pretty|json}");
    let p = match parse(&flags, args, HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let revision = option_env!("TRIBUNE_GIT_SHA").unwrap_or("");
    let info = VersionInfo {
        version: CONSUL_VERSION,
        revision,
        prerelease: "",
        build_date: build_date(),
        rpc: &RPC,
    };
    match p.get("format").unwrap_or("pretty") {
        "pretty" => {
            ctx.info(format!("Consul v{CONSUL_VERSION}"));
            if !revision.is_empty() {
                ctx.info(format!("Revision {revision}"));
            }
            ctx.info(format!("Build Date {}", info.build_date));
            ctx.info(format!(
                "Protocol {} spoken by default, understands {} to {} (agent will automatically use \
                 protocol >{} when speaking to compatible agents)",
                RPC.default, RPC.min, RPC.max, RPC.default
            ));
            ctx.info(format!("Tribune v{}", env!("CARGO_PKG_VERSION")));
            0
        }
        "json" => match go_json_indent3(&info) {
            Ok(text) => {
                ctx.info(text);
                0
            }
            Err(err) => {
                ctx.error(&format!("Failed to marshal version info: {err}"));
                1
            }
        },
        other => {
            ctx.error(&format!("Unknown format: {other}"));
            1
        }
    }
}

/// JSON indented with three spaces, as Consul's `json.MarshalIndent(info, "", "   ")`.
fn go_json_indent3(value: &impl Serialize) -> serde_json::Result<String> {
    super::format::marshal_indent(value, b"   ")
}

/// The build date as RFC 3339 (Consul refuses to print a version with an unparseable one).
fn build_date() -> String {
    if let Some(date) = option_env!("TRIBUNE_BUILD_DATE").filter(|d| looks_like_rfc3339(d)) {
        return date.to_owned();
    }
    let modified = std::env::current_exe()
        .and_then(std::fs::metadata)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    let secs = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_utc(secs)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (or with a numeric offset / fraction): enough to reject junk.
fn looks_like_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_utc(secs: u64) -> String {
    tribune_types::utc::UtcDateTime::from_unix(secs).rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_727_740_799), "2024-09-30T23:59:59Z");
        assert!(looks_like_rfc3339("2024-09-30T23:59:59Z"));
        assert!(!looks_like_rfc3339("yesterday"));
    }

    #[test]
    fn json_is_what_sdk_testutil_parses() {
        let mut ctx = Ctx::fake(&[], b"");
        assert_eq!(run(&["-format=json".to_owned()], &mut ctx), 0);
        let out = ctx.stdout();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Version"], "1.20.0");
        assert_eq!(v["Prerelease"], "");
        assert_eq!(
            v["RPC"],
            serde_json::json!({"Default": 2, "Min": 2, "Max": 3})
        );
        assert!(looks_like_rfc3339(v["BuildDate"].as_str().unwrap()));
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["Version", "Revision", "Prerelease", "BuildDate", "RPC"]
        );
        assert!(out.starts_with("{\n   \"Version\": \"1.20.0\",\n"));
    }

    #[test]
    fn pretty_and_bad_format() {
        let mut ctx = Ctx::fake(&[], b"");
        assert_eq!(run(&[], &mut ctx), 0);
        let out = ctx.stdout();
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines[0], "Consul v1.20.0");
        assert!(out.contains("\nBuild Date "));
        assert!(out.contains(
            "\nProtocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking to compatible agents)\n"
        ));
        assert_eq!(
            lines.last().copied(),
            Some(concat!("Tribune v", env!("CARGO_PKG_VERSION")))
        );
        let mut ctx = Ctx::fake(&[], b"");
        assert_eq!(run(&["-format".to_owned(), "yaml".to_owned()], &mut ctx), 1);
        assert_eq!(ctx.stderr(), "Unknown format: yaml\n");
    }
}
