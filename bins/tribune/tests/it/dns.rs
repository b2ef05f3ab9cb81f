//! The DNS interface against the real `dig` (Debian `bind9-dnsutils`, installed by
//! `cargo xtask prereqs`), over UDP and TCP, with `+bufsize=512`, `+noedns` and
//! `+bufsize=4096`, on a seeded agent: three nodes, twenty instances of `web` with tags,
//! one of them critical, one with its own address.
//!
//! dig's output is normalised (message ID and SOA serial masked, records of each
//! section sorted) and compared with `golden/dns.txt`. Answers that are trimmed from a
//! shuffled set differ from run to run, so for those the golden file records how many
//! records of which type came back, and the test checks they are a subset of the full
//! TCP answer. `TRIBUNE_BLESS=1` rewrites the golden file.

use crate::support::{register, Agent};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::collections::BTreeSet;
use std::process::Command;

const INSTANCES: usize = 20;
const CRITICAL: usize = 7;
const OWN_ADDRESS: usize = 3;

async fn seed(http: &str) -> Result<()> {
    let c = reqwest::Client::new();
    for i in 0..INSTANCES {
        let node = format!("node{}", i % 3 + 1);
        let mut service = json!({
            "ID": format!("web-{i}"),
            "Service": "web",
            "Port": 8000 + i,
            "Tags": [if i % 2 == 0 { "v1" } else { "v2" }],
        });
        if i == OWN_ADDRESS {
            service["Address"] = json!("10.0.1.3");
        }
        let mut body = json!({
            "Node": node,
            "Address": format!("10.0.0.{}", i % 3 + 1),
            "NodeMeta": {"rack": format!("r{}", i % 3 + 1), "rfc1035-note": "plain"},
            "Service": service,
        });
        if i == CRITICAL {
            body["Check"] = json!({
                "CheckID": "web-7-down", "Name": "down", "Status": "critical",
                "ServiceID": "web-7",
            });
        }
        register(&c, http, &body).await?;
    }
    Ok(())
}

/// One dig query and its normalised output.
pub(crate) struct Dig {
    pub(crate) text: String,
    /// Answer records as dig prints them (for subset checks).
    pub(crate) answers: Vec<String>,
    /// Additional records (for subset checks).
    additional: Vec<String>,
}

pub(crate) fn dig(port: u16, args: &[&str]) -> Result<Dig> {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string()])
        .args([
            "+noall",
            "+comments",
            "+answer",
            "+authority",
            "+additional",
        ])
        .args(["+tries=1", "+time=5"])
        .args(args)
        .output()
        .context("running dig (cargo xtask prereqs installs bind9-dnsutils)")?;
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut text = String::new();
    let mut section: Vec<String> = Vec::new();
    let mut answers = Vec::new();
    let mut additional = Vec::new();
    let mut in_answer = false;
    let mut in_additional = false;
    let flush = |text: &mut String, section: &mut Vec<String>| {
        section.sort();
        for l in section.drain(..) {
            text.push_str(&l);
            text.push('\n');
        }
    };
    for line in raw.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with(";; Got answer") {
            continue;
        }
        if line.starts_with(";;") || line.starts_with("; EDNS") {
            flush(&mut text, &mut section);
            in_answer = line.starts_with(";; ANSWER SECTION");
            in_additional = line.starts_with(";; ADDITIONAL SECTION");
            let masked = match line.find(", id: ") {
                Some(pos) => line[..pos].to_owned() + ", id: <id>",
                None => line.to_owned(),
            };
            text.push_str(&masked);
            text.push('\n');
            continue;
        }
        // Records: collapse whitespace; mask the SOA serial (Unix time).
        let mut fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        if fields.get(3).map(String::as_str) == Some("SOA") && fields.len() > 6 {
            fields[6] = "<serial>".into();
        }
        let rec = fields.join(" ");
        if in_answer {
            answers.push(rec.clone());
        }
        if in_additional {
            additional.push(rec.clone());
        }
        section.push(rec);
    }
    flush(&mut text, &mut section);
    Ok(Dig {
        text,
        answers,
        additional,
    })
}

/// Replaces the answer and additional sections of a shuffled, trimmed answer by their
/// size and types (and the header's additional count, which depends on which SRV
/// targets were drawn), after checking both are subsets of the full answer's.
fn summarise_subset(d: &Dig, full: &Dig) -> Result<String> {
    for (part, got, all) in [
        ("answer", &d.answers, &full.answers),
        ("additional", &d.additional, &full.additional),
    ] {
        let all: BTreeSet<&String> = all.iter().collect();
        if let Some(extra) = got.iter().find(|r| !all.contains(r)) {
            bail!("trimmed {part} section has {extra:?}, which the full answer does not");
        }
    }
    let kinds = |recs: &[String]| -> BTreeSet<String> {
        recs.iter()
            .filter_map(|a| a.split(' ').nth(3).map(str::to_owned))
            .collect()
    };
    let mut out = String::new();
    let mut skipping = false;
    for line in d.text.lines() {
        let (section, recs) = if line.starts_with(";; ANSWER SECTION") {
            ("ANSWER", &d.answers)
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            ("ADDITIONAL", &d.additional)
        } else {
            ("", &d.answers)
        };
        if !section.is_empty() {
            // Which additional records fit depends on which targets were drawn (one
            // node's A and TXT, or several nodes' A), so only the answer section's
            // size and type are stable enough to pin.
            if section == "ANSWER" {
                out.push_str(&format!(
                    ";; ANSWER SECTION: {} records of {:?}, a subset of the full answer's\n",
                    recs.len(),
                    kinds(recs)
                ));
            } else {
                out.push_str(";; ADDITIONAL SECTION: a subset of the full answer's\n");
            }
            skipping = true;
            continue;
        }
        if line.starts_with(";;") {
            skipping = false;
        }
        if skipping {
            continue;
        }
        match line.find(", ADDITIONAL: ") {
            Some(pos) if line.starts_with(";; flags:") => {
                out.push_str(&line[..pos]);
                out.push_str(", ADDITIONAL: <n>\n");
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// The same question asked and parsed with hickory-proto, as a second parser: the
/// response must decode, with dig's status, and the same records (owner and type) as
/// dig saw, or for a trimmed, shuffled answer a subset of the full one. The query
/// carries no cookie (dig's does), so it also takes the answer cache's path.
fn second_parser(
    port: u16,
    name: &str,
    qtype: &str,
    variant: &[&str],
    dig: &Dig,
    full: &Dig,
) -> Result<()> {
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    use std::io::{Read, Write};
    use std::str::FromStr;

    let mut query = Message::query();
    query.metadata.id = 0x7e57;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii(name)?,
        RecordType::from_str(qtype)?,
    ));
    let edns_size = match variant {
        ["+noedns"] => None,
        ["+bufsize=512"] => Some(512),
        ["+bufsize=4096"] => Some(4096),
        _ => Some(1232),
    };
    if let Some(size) = edns_size {
        let mut edns = Edns::new();
        edns.set_max_payload(size);
        query.set_edns(edns);
    }
    let bytes = query.to_vec()?;
    let timeout = Some(std::time::Duration::from_secs(5));
    let reply = if variant == ["+tcp"] {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(timeout)?;
        stream.write_all(&(bytes.len() as u16).to_be_bytes())?;
        stream.write_all(&bytes)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len)?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply)?;
        reply
    } else {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(timeout)?;
        socket.send_to(&bytes, ("127.0.0.1", port))?;
        let mut buf = vec![0u8; 65535];
        let n = socket.recv(&mut buf)?;
        buf.truncate(n);
        buf
    };
    let message = Message::from_vec(&reply)?;
    let key = |name: &str, rtype: &str| format!("{} {}", name.to_ascii_lowercase(), rtype);
    let theirs = |records: &[String]| -> Vec<String> {
        let mut v: Vec<String> = records
            .iter()
            .filter_map(|r| {
                let f: Vec<&str> = r.split(' ').collect();
                Some(key(f.first()?, f.get(3)?))
            })
            .collect();
        v.sort();
        v
    };
    let ours = |records: &[hickory_proto::rr::Record]| -> Vec<String> {
        let mut v: Vec<String> = records
            .iter()
            .map(|r| key(&r.name.to_ascii(), &r.record_type().to_string()))
            .collect();
        v.sort();
        v
    };
    let (answers, additional) = (ours(&message.answers), ours(&message.additionals));
    let trimmed = variant != ["+tcp"] && dig.answers.len() < full.answers.len();
    if trimmed {
        let all: BTreeSet<String> = theirs(&full.answers).into_iter().collect();
        if let Some(extra) = answers.iter().find(|a| !all.contains(*a)) {
            bail!("answer {extra} is not in the full answer");
        }
    } else {
        if answers != theirs(&dig.answers) {
            bail!("answers {answers:?} but dig saw {:?}", theirs(&dig.answers));
        }
        if additional != theirs(&dig.additional) {
            bail!(
                "additional {additional:?} but dig saw {:?}",
                theirs(&dig.additional)
            );
        }
    }
    let dig_status = dig
        .text
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default();
    let our_status = match message.metadata.response_code {
        hickory_proto::op::ResponseCode::NoError => "NOERROR",
        hickory_proto::op::ResponseCode::NXDomain => "NXDOMAIN",
        hickory_proto::op::ResponseCode::Refused => "REFUSED",
        hickory_proto::op::ResponseCode::ServFail => "SERVFAIL",
        other => bail!("unexpected status {other}"),
    };
    if dig_status != our_status {
        bail!("status {our_status} but dig saw {dig_status}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_golden_answers_over_udp_and_tcp() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start_with(&dir.path().join("data"), json!({}), true)?;
    let port = agent.dns.context("no DNS port")?;
    seed(&agent.http).await?;

    // (name, type, shuffled-and-trimmed under small UDP sizes?)
    let queries: &[(&str, &str, bool)] = &[
        ("web.service.consul", "A", true),
        ("web.service.consul", "SRV", true),
        ("v1.web.service.consul", "A", true),
        ("_web._tcp.service.consul", "SRV", true),
        ("_web._v2.service.dc1.consul", "SRV", true),
        ("WEB.Service.CONSUL", "A", true),
        ("node1.node.consul", "A", false),
        ("node1.node.dc1.consul", "TXT", false),
        ("node2.node.consul", "AAAA", false),
        ("0a000103.addr.consul", "A", false),
        ("1.0.0.10.in-addr.arpa", "PTR", false),
        ("consul", "SOA", false),
        ("consul", "NS", false),
        ("nosuch.service.consul", "A", false),
        ("nosuch.node.consul", "A", false),
        ("web.service.dc2.consul", "A", false),
        ("example.com", "A", false),
    ];
    let mut golden = String::new();
    for (name, qtype, shuffled) in queries {
        let full = dig(port, &["+tcp", name, qtype])?;
        for variant in [
            &["+tcp"][..],
            &["+bufsize=4096"],
            &["+bufsize=512"],
            &["+noedns"],
        ] {
            let mut args: Vec<&str> = variant.to_vec();
            args.extend([*name, *qtype]);
            let d = dig(port, &args)?;
            second_parser(port, name, qtype, variant, &d, &full)
                .with_context(|| format!("hickory-proto on {}", args.join(" ")))?;
            golden.push_str(&format!("=== dig {}\n", args.join(" ")));
            if *shuffled && !variant.contains(&"+tcp") {
                golden.push_str(&summarise_subset(&d, &full)?);
            } else {
                golden.push_str(&d.text);
            }
        }
    }
    // The run-time value (cargo test sets it) names this clone even when the binary
    // was built from another one sharing the target directory.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let path = dir.join("tests/it/golden/dns.txt");
    if std::env::var_os("TRIBUNE_BLESS").is_some() {
        std::fs::write(&path, &golden)?;
    }
    let want = std::fs::read_to_string(&path)
        .with_context(|| format!("{} (run with TRIBUNE_BLESS=1 to create)", path.display()))?;
    if want != golden {
        let diff: Vec<String> = want
            .lines()
            .zip(golden.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n  want {a}\n  got  {b}", i + 1))
            .collect();
        bail!(
            "dig output differs from golden/dns.txt ({} vs {} lines):\n{}",
            want.lines().count(),
            golden.lines().count(),
            diff.join("\n")
        );
    }
    Ok(())
}

/// Repeated questions are answered from the agent's answer cache; a health change
/// must still reach the answers, through the cache's blocking query on the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_follow_health_changes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start_with(&dir.path().join("data"), json!({}), true)?;
    let port = agent.dns.context("no DNS port")?;
    let c = reqwest::Client::new();
    let registration = |status: &str| {
        json!({
            "Node": "api-node", "Address": "10.0.9.1",
            "Service": {"ID": "api-1", "Service": "api", "Port": 80},
            "Check": {"CheckID": "api-up", "Name": "up", "Status": status, "ServiceID": "api-1"},
        })
    };
    let answers = || -> Result<usize> {
        Ok(dig(port, &["+bufsize=4096", "api.service.consul", "A"])?
            .answers
            .len())
    };
    // Until `want` answers come back (bounded: the watcher runs on its own task).
    let expect = |want: usize| -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while answers()? != want {
            if std::time::Instant::now() > deadline {
                bail!("api.service.consul never had {want} answers");
            }
        }
        Ok(())
    };
    for (status, want) in [("passing", 1), ("critical", 0), ("passing", 1)] {
        register(&c, &agent.http, &registration(status)).await?;
        expect(want)?;
        // Asked again (from the cache when positive), the answer holds.
        assert_eq!(answers()?, want, "after the check went {status}");
    }
    Ok(())
}

/// Garbage on the DNS port (short packets, random bytes, a response instead of a
/// query, a name with a 200-byte label) is answered with an error or dropped; the
/// server keeps answering real queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_never_take_dns_down() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = Agent::start_with(&dir.path().join("data"), json!({}), true)?;
    let port = agent.dns.context("no DNS port")?;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(("127.0.0.1", port))?;
    let mut long_label = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 200];
    long_label.extend(std::iter::repeat_n(b'a', 200));
    long_label.extend([0, 0, 1, 0, 1]);
    let mut state = 0x2545_f491_u64;
    let noise: Vec<u8> = (0..300)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let packets: Vec<Vec<u8>> = vec![
        vec![0xff; 5],
        noise,
        // QR set: a response, not a query.
        vec![0x12, 0x34, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0],
        // Claims one question, carries none.
        vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0],
        long_label,
    ];
    for p in &packets {
        sock.send(p)?;
    }
    let d = dig(port, &["node-not-there.node.consul", "A"])?;
    assert!(d.text.contains("status: NXDOMAIN"), "{}", d.text);
    let d = dig(port, &["+tcp", "consul", "SOA"])?;
    assert!(d.text.contains("status: NOERROR"), "{}", d.text);
    Ok(())
}
