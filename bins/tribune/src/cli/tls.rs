//! `tls ca create` and `tls cert create`: a CA for agent TLS and the server,
//! client and CLI certificates it signs, written into the working directory
//! under Consul's file names (`consul-agent-ca.pem`, `dc1-server-consul-0.pem`,
//! ...) with Consul's messages (`command/tls/...`), so setup scripts written for
//! `consul tls` run unchanged. The cryptography is in [`pki`].
//!
//! Files are never overwritten: `ca create` refuses when either file exists,
//! `cert create` takes the first free index. Each file is written to a
//! temporary name and renamed into place, keys with mode 0600.

mod pki;

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;

use tribune_types::goflag::FlagSet;

use super::{group, number_flag, parse, Ctx};

const SUBCOMMANDS: &[(&str, &str)] = &[
    ("ca", "Helpers for CAs"),
    ("cert", "Helpers for certificates"),
];

const HELP: &str = "Usage: tribune tls <subcommand> <subcommand> [options]

  This command has subcommands for interacting with Consul TLS.

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Create a CA

      $ tribune tls ca create

  Create a server certificate

      $ tribune tls cert create -server

  Create a client certificate

      $ tribune tls cert create -client

  For more examples, ask for subcommand help or view the documentation.";

const CA_HELP: &str = "Usage: tribune tls ca <subcommand> [options]

  This command has subcommands for interacting with Certificate Authorities.

  Create a CA

      $ tribune tls ca create

  For more examples, ask for subcommand help or view the documentation.";

const CERT_HELP: &str = "Usage: tribune tls cert <subcommand> [options]

  This command has subcommands for interacting with certificates.

  Create a server certificate

      $ tribune tls cert create -server

  Create a client certificate

      $ tribune tls cert create -client

  For more examples, ask for subcommand help or view the documentation.";

const CA_CREATE_HELP: &str = "Usage: tribune tls ca create [options]

  Create a new consul CA:

  $ tribune tls ca create
  ==> Saved consul-agent-ca.pem
  ==> Saved consul-agent-ca-key.pem";

const CERT_CREATE_HELP: &str = "Usage: tribune tls cert create [options]

  Create a new certificate

  $ tribune tls cert create -server
  ==> WARNING: Server Certificates grants authority to become a
      server and access all state in the cluster including root keys
      and all ACL tokens. Do not distribute them to production hosts
      that are not server nodes. Store them as securely as CA keys.
  ==> Using consul-agent-ca.pem and consul-agent-ca-key.pem
  ==> Saved dc1-server-consul-0.pem
  ==> Saved dc1-server-consul-0-key.pem
  $ tribune tls cert create -client
  ==> Using consul-agent-ca.pem and consul-agent-ca-key.pem
  ==> Saved dc1-client-consul-0.pem
  ==> Saved dc1-client-consul-0-key.pem";

/// `tls ...`, writing into the working directory.
pub(crate) fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    run_in(Path::new("."), args, ctx)
}

/// `tls ...`, writing into `dir` (tests use a temporary one).
fn run_in(dir: &Path, args: &[String], ctx: &mut Ctx) -> i32 {
    let (sub, rest) = match group(args, HELP, SUBCOMMANDS, ctx) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let (help, synopsis) = if sub == "ca" {
        (CA_HELP, "Create a new consul CA")
    } else {
        (CERT_HELP, "Create a new certificate")
    };
    let rest = match group(rest, help, &[("create", synopsis)], ctx) {
        Ok((_, rest)) => rest,
        Err(code) => return code,
    };
    if sub == "ca" {
        ca_create(dir, rest, ctx)
    } else {
        cert_create(dir, rest, ctx)
    }
}

/// `-days`, positive (Go's flag takes any int; a CA or certificate that is
/// expired when made is refused here instead).
fn days_flag(parsed: &tribune_types::goflag::Parsed, default: i64) -> Result<i64, String> {
    match number_flag::<i64>(parsed, "days")? {
        None => Ok(default),
        Some(days) if days > 0 => Ok(days),
        Some(days) => Err(format!("-days must be at least 1, not {days}")),
    }
}

/// `tls ca create`.
fn ca_create(dir: &Path, args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = FlagSet::new("tls ca create")
        .value(
            "days",
            "Number of days the CA is valid for. Defaults to 1825 days (approximately 5 years).",
        )
        .bool(
            "name-constraint",
            "Enables X.509 name constraints for the CA. If used, the CA only signs certificates for localhost and the domains specified by -domain and -additional-name-constraint. If Consul's UI is served over HTTPS in your deployment, add its DNS name with -additional-constraint. Defaults to false.",
        )
        .value(
            "domain",
            "The DNS domain of the Consul cluster that agents are configured with. Defaults to consul. Only used when -name-constraint is set. Additional domains can be passed with -additional-name-constraint.",
        )
        .value(
            "cluster-id",
            "ID of the Consul cluster. Sets the CA's URI with the SPIFFEID composed of the cluster ID and domain (specified by -domain or 'consul' by default).",
        )
        .value("common-name", "Common Name of CA. Defaults to Consul Agent CA.")
        .multi(
            "additional-name-constraint",
            "Add name constraints for the CA. Results in rejecting certificates for other DNS than specified. Can be used multiple times. Only used in combination with -name-constraint.",
        );
    let p = match parse(&flags, args, CA_CREATE_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let days = match days_flag(&p, 1825) {
        Ok(days) => days,
        Err(message) => {
            ctx.error(&message);
            return 1;
        }
    };
    let domain = p.get("domain").unwrap_or("consul");
    let cert_file = format!("{domain}-agent-ca.pem");
    let key_file = format!("{domain}-agent-ca-key.pem");
    for file in [&cert_file, &key_file] {
        if dir.join(file).symlink_metadata().is_ok() {
            ctx.error(&format!("{file} already exists."));
            return 1;
        }
    }
    let mut permitted_dns = Vec::new();
    if p.is_set("name-constraint") {
        permitted_dns.extend(p.all("additional-name-constraint").iter().cloned());
        permitted_dns.extend([domain.to_owned(), "localhost".to_owned()]);
    }
    let spiffe = p
        .get("cluster-id")
        .filter(|id| !id.is_empty())
        .map(|id| format!("spiffe://{id}.{domain}").to_lowercase());
    let generated = pki::generate_ca(&pki::CaOptions {
        common_name: p.get("common-name").unwrap_or(""),
        days,
        permitted_dns,
        spiffe,
        now: time::OffsetDateTime::now_utc(),
    });
    match generated {
        Ok(generated) => save(dir, ctx, &cert_file, &key_file, &generated),
        Err(e) => {
            ctx.error(&e.to_string());
            1
        }
    }
}

/// `tls cert create`.
fn cert_create(dir: &Path, args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = FlagSet::new("tls cert create")
        .value("ca", "Provide path to the ca. Defaults to #DOMAIN#-agent-ca.pem.")
        .value("key", "Provide path to the key. Defaults to #DOMAIN#-agent-ca-key.pem.")
        .bool("server", "Generate server certificate.")
        .bool("client", "Generate client certificate.")
        .value(
            "node",
            "When generating a server cert and this is set an additional dns name is included of the form <node>.server.<datacenter>.<domain>.",
        )
        .bool("cli", "Generate cli certificate.")
        .value(
            "days",
            "Provide number of days the certificate is valid for from now on. Defaults to 1 year.",
        )
        .value(
            "dc",
            "Provide the datacenter. Matters only for -server certificates. Defaults to dc1.",
        )
        .value(
            "domain",
            "Provide the domain. Matters only for -server certificates.",
        )
        .multi(
            "additional-dnsname",
            "Provide an additional dnsname for Subject Alternative Names. localhost is always included. This flag may be provided multiple times.",
        )
        .multi(
            "additional-ipaddress",
            "Provide an additional ipaddress for Subject Alternative Names. 127.0.0.1 is always included. This flag may be provided multiple times.",
        );
    let p = match parse(&flags, args, CERT_CREATE_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let ca = p.get("ca").unwrap_or("#DOMAIN#-agent-ca.pem");
    let key = p.get("key").unwrap_or("#DOMAIN#-agent-ca-key.pem");
    if ca.is_empty() {
        ctx.error("Please provide the ca");
        return 1;
    }
    if key.is_empty() {
        ctx.error("Please provide the key");
        return 1;
    }
    let kinds = [p.is_set("server"), p.is_set("client"), p.is_set("cli")];
    if kinds.iter().filter(|set| **set).count() != 1 {
        ctx.error("Please provide either -server, -client, or -cli");
        return 1;
    }
    let [server, client, _] = kinds;
    let node = p.get("node").unwrap_or("");
    if !node.is_empty() && !server {
        ctx.error("-node requires -server");
        return 1;
    }
    let days = match days_flag(&p, 365) {
        Ok(days) => days,
        Err(message) => {
            ctx.error(&message);
            return 1;
        }
    };
    let dc = p.get("dc").unwrap_or("dc1");
    let domain = p.get("domain").unwrap_or("consul");

    let mut dns_names: Vec<String> = p
        .all("additional-dnsname")
        .iter()
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    let mut ip_addresses = Vec::new();
    for text in p.all("additional-ipaddress") {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match text.parse::<IpAddr>() {
            Ok(ip) => ip_addresses.push(ip),
            Err(_) => {
                ctx.error(&format!("Invalid IP address: {text}"));
                return 1;
            }
        }
    }
    let loopback = IpAddr::from([127, 0, 0, 1]);
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let (kind, usages) = if server {
        if !node.is_empty() {
            dns_names.push(format!("{node}.server.{dc}.{domain}"));
        }
        ip_addresses.push(loopback);
        ("server", vec![ServerAuth, ClientAuth])
    } else if client {
        ip_addresses.push(loopback);
        ("client", vec![ClientAuth, ServerAuth])
    } else {
        // Consul's CLI certificate drops the additional DNS names (not the
        // additional addresses) and does not add 127.0.0.1.
        dns_names.clear();
        ("cli", Vec::new())
    };
    let name = format!("{kind}.{dc}.{domain}");
    dns_names.extend([name.clone(), "localhost".to_owned()]);
    let prefix = format!("{dc}-{kind}-{domain}");

    // The first index whose certificate and key files are both free.
    let free = (0..=10_000).map(|i| (format!("{prefix}-{i}.pem"), format!("{prefix}-{i}-key.pem")));
    // `symlink_metadata`, not `exists`: a dangling link is not a free name.
    let taken = |name: &str| dir.join(name).symlink_metadata().is_ok();
    let Some((cert_file, key_file)) = free.into_iter().find(|(c, k)| !taken(c) && !taken(k)) else {
        ctx.error("Could not find a filename that doesn't already exist");
        return 1;
    };

    let ca_file = ca.replacen("#DOMAIN#", domain, 1);
    let key_path = key.replacen("#DOMAIN#", domain, 1);
    let ca_pem = match std::fs::read_to_string(dir.join(&ca_file)) {
        Ok(text) => text,
        Err(e) => {
            ctx.error(&format!(
                "Error reading CA: {}",
                go_open_error(&ca_file, &e)
            ));
            return 1;
        }
    };
    let key_pem = match std::fs::read_to_string(dir.join(&key_path)) {
        Ok(text) => text,
        Err(e) => {
            ctx.error(&format!(
                "Error reading CA key: {}",
                go_open_error(&key_path, &e)
            ));
            return 1;
        }
    };
    if server {
        ctx.info(
            "==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys.",
        );
    }
    ctx.info(format!("==> Using {ca_file} and {key_path}"));
    let now = time::OffsetDateTime::now_utc();
    let generated = pki::generate_cert(
        &ca_pem,
        &key_pem,
        &pki::CertOptions {
            name: name.clone(),
            days,
            dns_names,
            ip_addresses,
            usages,
            now,
        },
    )
    .and_then(|generated| {
        pki::verify(&ca_pem, &generated.cert_pem, &name, now)?;
        Ok(generated)
    });
    match generated {
        Ok(generated) => save(dir, ctx, &cert_file, &key_file, &generated),
        Err(e) => {
            ctx.error(&e.to_string());
            1
        }
    }
}

/// An I/O error on opening `path` as Go words it (`open X: no such file or
/// directory`), which scripts may match.
fn go_open_error(path: &str, e: &std::io::Error) -> String {
    let text = e.to_string();
    // Rust appends " (os error N)" and capitalises the description.
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    let text: String = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("open {path}: {text}")
}

/// Writes the certificate, then the key, each with Consul's `==> Saved` line.
/// A key that cannot be written takes its certificate back with it, so a
/// failure leaves nothing behind.
fn save(dir: &Path, ctx: &mut Ctx, cert_file: &str, key_file: &str, g: &pki::Generated) -> i32 {
    if let Err(e) = write_new(&dir.join(cert_file), g.cert_pem.as_bytes(), 0o666) {
        ctx.error(&format!("writing {cert_file}: {e}"));
        return 1;
    }
    if let Err(e) = write_new(&dir.join(key_file), g.key_pem.as_bytes(), 0o600) {
        let _ = std::fs::remove_file(dir.join(cert_file));
        ctx.error(&format!("writing {key_file}: {e}"));
        return 1;
    }
    ctx.info(format!("==> Saved {cert_file}"));
    ctx.info(format!("==> Saved {key_file}"));
    0
}

/// Writes `path` through a temporary file in the same directory, synced and
/// renamed into place, so a crash leaves either no file or a whole one; the
/// mode is set at creation (and reduced by the umask), so a key is never
/// readable by others, even for a moment.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let parent = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        // `link` fails if the target appeared meanwhile, where `rename` would
        // replace it: files are never overwritten.
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn run(dir: &Path, args: &[&str]) -> (i32, Ctx) {
        let mut ctx = Ctx::fake(&[], b"");
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let code = run_in(dir, &args, &mut ctx);
        (code, ctx)
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    #[test]
    fn a_ca_then_server_client_and_cli_certificates_under_consul_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (code, ctx) = run(d, &["ca", "create"]);
        assert_eq!(code, 0, "{}", ctx.stderr());
        assert_eq!(
            ctx.stdout(),
            "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n"
        );
        let mode = |f: &str| d.join(f).metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("consul-agent-ca-key.pem"), 0o600);
        let ca = read(d, "consul-agent-ca.pem");

        let (code, ctx) = run(d, &["cert", "create", "-server", "-node", "n1"]);
        assert_eq!(code, 0, "{}", ctx.stderr());
        let out = ctx.stdout();
        assert!(out.starts_with("==> WARNING: Server Certificates grants authority"));
        assert!(out.ends_with(
            "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n\
             ==> Saved dc1-server-consul-0.pem\n==> Saved dc1-server-consul-0-key.pem\n"
        ));
        assert_eq!(mode("dc1-server-consul-0-key.pem"), 0o600);
        let server = read(d, "dc1-server-consul-0.pem");
        let now = time::OffsetDateTime::now_utc();
        for name in ["server.dc1.consul", "n1.server.dc1.consul", "localhost"] {
            pki::verify(&ca, &server, name, now).unwrap();
        }

        // The next one takes the next index; a client certificate has its own prefix.
        let (code, ctx) = run(d, &["cert", "create", "-server"]);
        assert_eq!(code, 0, "{}", ctx.stderr());
        assert!(ctx.stdout().contains("==> Saved dc1-server-consul-1.pem\n"));
        let (code, ctx) = run(d, &["cert", "create", "-client", "-dc", "east"]);
        assert_eq!(code, 0, "{}", ctx.stderr());
        assert!(!ctx.stdout().contains("WARNING"));
        assert!(ctx
            .stdout()
            .contains("==> Saved east-client-consul-0-key.pem\n"));
        pki::verify(
            &ca,
            &read(d, "east-client-consul-0.pem"),
            "client.east.consul",
            now,
        )
        .unwrap();
        let (code, ctx) = run(
            d,
            &["cert", "create", "-cli", "-additional-dnsname", "x.example"],
        );
        assert_eq!(code, 0, "{}", ctx.stderr());
        let cli = read(d, "dc1-cli-consul-0.pem");
        pki::verify(&ca, &cli, "cli.dc1.consul", now).unwrap();
        // Consul's CLI certificate drops the additional names.
        assert!(pki::verify(&ca, &cli, "x.example", now).is_err());
    }

    #[test]
    fn refusals_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (code, ctx) = run(d, &["cert", "create", "-server"]);
        assert_eq!(code, 1);
        assert_eq!(
            ctx.stderr(),
            "Error reading CA: open consul-agent-ca.pem: no such file or directory\n"
        );
        assert_eq!(run(d, &["ca", "create"]).0, 0);
        let ca = read(d, "consul-agent-ca.pem");
        let (code, ctx) = run(d, &["ca", "create"]);
        assert_eq!(
            (code, ctx.stderr().as_str()),
            (1, "consul-agent-ca.pem already exists.\n")
        );
        assert_eq!(read(d, "consul-agent-ca.pem"), ca);
        for (args, message) in [
            (
                &["cert", "create"][..],
                "Please provide either -server, -client, or -cli\n",
            ),
            (
                &["cert", "create", "-server", "-client"],
                "Please provide either -server, -client, or -cli\n",
            ),
            (
                &["cert", "create", "-client", "-node", "n1"],
                "-node requires -server\n",
            ),
            (
                &["cert", "create", "-server", "-ca="],
                "Please provide the ca\n",
            ),
            (
                &["cert", "create", "-server", "-days", "0"],
                "-days must be at least 1, not 0\n",
            ),
            (
                &["cert", "create", "-server", "-additional-ipaddress", "nope"],
                "Invalid IP address: nope\n",
            ),
        ] {
            let (code, ctx) = run(d, args);
            assert_eq!((code, ctx.stderr().as_str()), (1, message), "{args:?}");
        }
        // A CA with name constraints refuses a certificate for a name outside them.
        let (code, _) = run(d, &["ca", "create", "-domain", "corp", "-name-constraint"]);
        assert_eq!(code, 0);
        let (code, ctx) = run(
            d,
            &[
                "cert",
                "create",
                "-server",
                "-domain",
                "corp",
                "-additional-dnsname",
                "evil.example",
            ],
        );
        assert_eq!(code, 1);
        assert!(ctx.stderr().contains("does not verify"), "{}", ctx.stderr());
        let names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("server")), "{names:?}");
        // Inside them it works.
        let (code, ctx) = run(d, &["cert", "create", "-server", "-domain", "corp"]);
        assert_eq!(code, 0, "{}", ctx.stderr());
    }

    #[test]
    fn help_and_unknown_subcommands() {
        let dir = tempfile::tempdir().unwrap();
        let (code, ctx) = run(dir.path(), &["-h"]);
        assert_eq!(code, 0);
        assert!(ctx.stdout().contains("    ca      Helpers for CAs\n"));
        let (code, ctx) = run(dir.path(), &["ca"]);
        assert_eq!(code, 1);
        assert!(ctx
            .stdout()
            .contains("    create    Create a new consul CA"));
        let (code, ctx) = run(dir.path(), &["cert", "create", "-h"]);
        assert_eq!(code, 0);
        assert!(ctx.stdout().contains("-additional-ipaddress"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
