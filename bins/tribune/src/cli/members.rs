//! `members`: the gossip pool as a table, laid out exactly like Consul's.

use std::net::IpAddr;

use regex::Regex;
use tribune_client::{AgentMember, MembersOptions};
use tribune_types::goflag::FlagSet;

use super::format::columnize;
use super::http::{client, client_flags};
use super::{parse, Ctx};

const HELP: &str = "Usage: tribune members [options]

  Outputs the members of a running agent's gossip pool.";

fn flags() -> FlagSet {
    let flags = FlagSet::new("members")
        .bool("detailed", "Provides detailed information about nodes.")
        .bool(
            "wan",
            "If the agent is in server mode, this can be used to return the other peers in the WAN pool.",
        )
        .value(
            "status",
            "If provided, output is filtered to only nodes matching the regular expression for status.",
        )
        .value(
            "segment",
            "(Enterprise-only) If provided, output is filtered to only nodes in the given segment.",
        )
        .value("filter", "Filter to use with the request")
        .value("partition", "Enterprise admin partition (accepted and ignored).");
    client_flags(flags)
}

/// `members`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = flags();
    let p = match parse(&flags, args, HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let status_re = match Regex::new(p.get("status").unwrap_or(".*")) {
        Ok(re) => re,
        Err(err) => {
            ctx.error(&format!("Failed to compile status regexp: {err}"));
            return 1;
        }
    };
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opts = MembersOptions {
        wan: p.is_set("wan"),
        segment: p.get("segment").map(str::to_owned),
        filter: p.get("filter").map(str::to_owned),
    };
    let members = match client.agent().members(&opts).await {
        Ok(m) => m,
        Err(err) => {
            ctx.error(&format!("Error retrieving members: {err}"));
            return 1;
        }
    };
    let all_segments = p.get("segment").is_none();
    let mut members: Vec<AgentMember> = members
        .into_iter()
        .map(|m| with_display_tags(m, all_segments))
        .filter(|m| status_re.is_match(m.status_name()))
        .collect();
    // Consul exits 2, silently, when nothing matches (scripts test for it).
    if members.is_empty() {
        return 2;
    }
    members.sort_by_key(sort_key);
    let rows = if p.is_set("detailed") {
        detailed_rows(&members)
    } else {
        standard_rows(&members)
    };
    ctx.info(columnize(&rows));
    0
}

/// Fills in the `partition` and `segment` tags the way Consul does before printing:
/// the default partition is named, servers of an all-segments listing show `<all>`,
/// members without a segment `<default>`. (The `-detailed` tags include these too.)
fn with_display_tags(mut member: AgentMember, all_segments: bool) -> AgentMember {
    let partition = member.tags.entry("ap".to_owned()).or_default();
    if partition.is_empty() {
        *partition = "default".to_owned();
    }
    if member.tags["ap"] == "default" {
        let is_server = member.tags.get("role").map(String::as_str) == Some("consul");
        let segment = member.tags.entry("segment".to_owned()).or_default();
        if all_segments && is_server {
            *segment = "<all>".to_owned();
        } else if segment.is_empty() {
            *segment = "<default>".to_owned();
        }
    } else {
        member.tags.insert("segment".to_owned(), String::new());
    }
    member
}

/// Servers first, then the default partition, then by segment, partition and name.
fn sort_key(m: &AgentMember) -> (bool, bool, String, String, String) {
    let tag = |k: &str| m.tags.get(k).cloned().unwrap_or_default();
    let partition = tag("ap");
    (
        tag("role") != "consul",
        !(partition.is_empty() || partition == "default"),
        tag("segment"),
        partition,
        m.name.clone(),
    )
}

/// Go's `net.TCPAddr.String()`: `ip:port`, `[v6]:port`, or `:port` when the IP is unparseable.
fn member_addr(m: &AgentMember) -> String {
    match m.addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => format!("{ip}:{}", m.port),
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", m.port),
        Err(_) => format!(":{}", m.port),
    }
}

fn standard_rows(members: &[AgentMember]) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
        "Segment",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect::<Vec<_>>()];
    for m in members {
        let tag = |k: &str| m.tags.get(k).cloned().unwrap_or_default();
        let mut build = tag("build");
        if build.is_empty() {
            build = "< 0.3".to_owned();
        } else if let Some(i) = build.find(':') {
            build.truncate(i);
        }
        let kind = match tag("role").as_str() {
            "node" => "client",
            "consul" => "server",
            _ => {
                rows.push(vec![
                    m.name.clone(),
                    member_addr(m),
                    m.status_name().to_owned(),
                    "unknown".to_owned(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                continue;
            }
        };
        rows.push(vec![
            m.name.clone(),
            member_addr(m),
            m.status_name().to_owned(),
            kind.to_owned(),
            build,
            tag("vsn"),
            tag("dc"),
            tag("ap"),
            tag("segment"),
        ]);
    }
    rows
}

fn detailed_rows(members: &[AgentMember]) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "Node".to_owned(),
        "Address".to_owned(),
        "Status".to_owned(),
        "Tags".to_owned(),
    ]];
    for m in members {
        // BTreeMap iteration is already sorted by key.
        let tags = m
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        rows.push(vec![
            m.name.clone(),
            member_addr(m),
            m.status_name().to_owned(),
            tags,
        ]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, ok, run_at, status};

    const MEMBERS: &str = r#"[
        {"Name":"client-1","Addr":"10.0.0.3","Port":8301,"Status":1,
         "Tags":{"role":"node","dc":"dc1","build":"1.20.0:abcdef","vsn":"2"}},
        {"Name":"server-2","Addr":"10.0.0.2","Port":8301,"Status":4,
         "Tags":{"role":"consul","dc":"dc1","build":"1.20.0","vsn":"2"}},
        {"Name":"server-1","Addr":"::1","Port":8301,"Status":1,
         "Tags":{"role":"consul","dc":"dc1","build":"1.20.0","vsn":"2"}},
        {"Name":"odd","Addr":"bogus","Port":1,"Status":3,"Tags":{}}
    ]"#;

    #[tokio::test]
    async fn table_like_consul() {
        let fake = fake(|_| ok(MEMBERS)).await;
        let r = run_at(&fake.addr, "members", &[], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        let expected = "\
Node      Address        Status  Type     Build   Protocol  DC   Partition  Segment
server-1  [::1]:8301     alive   server   1.20.0  2         dc1  default    <all>
server-2  10.0.0.2:8301  failed  server   1.20.0  2         dc1  default    <all>
client-1  10.0.0.3:8301  alive   client   1.20.0  2         dc1  default    <default>
odd       :1             left    unknown                                    
";
        assert_eq!(r.out, expected);
    }

    #[tokio::test]
    async fn status_filter_detailed_and_wan() {
        let fake = fake(|_| ok(MEMBERS)).await;
        let r = run_at(
            &fake.addr,
            "members",
            &["-status=fail", "-detailed", "-wan"],
            b"",
        )
        .await;
        assert_eq!(
            r.out,
            "Node      Address        Status  Tags\n\
             server-2  10.0.0.2:8301  failed  ap=default,build=1.20.0,dc=dc1,role=consul,segment=<all>,vsn=2\n"
        );
        assert_eq!(fake.requests()[0].target, "/v1/agent/members?wan=1");
        // No match: exit 2 and no output.
        let r = run_at(&fake.addr, "members", &["-status", "^leaving$"], b"").await;
        assert_eq!((r.code, r.out.as_str(), r.err.as_str()), (2, "", ""));
        let r = run_at(&fake.addr, "members", &["-status", "("], b"").await;
        assert_eq!(r.code, 1);
        assert!(r.err.starts_with("Failed to compile status regexp: "));
    }

    #[tokio::test]
    async fn errors() {
        let fake = fake(|_| status(403, "Permission denied")).await;
        let r = run_at(&fake.addr, "members", &[], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (
                1,
                "Error retrieving members: Unexpected response code: 403 (Permission denied)\n"
            )
        );
    }
}
