//! `services register|deregister`: local-agent service registration from flags or
//! from service-definition files (JSON or HCL).

use tribune_client::service_def;
use tribune_client::{AgentServiceRegistration, ServiceAddress};
use tribune_types::goflag::FlagSet;

use super::http::{client, client_flags, server_flags, tenancy_flags};
use super::{flag_error, group, map_flag, number_flag, parse, Ctx};

const SUBCOMMANDS: &[(&str, &str)] = &[
    ("deregister", "Deregister services with the local agent"),
    ("register", "Register services with the local agent"),
];

const HELP: &str = r#"Usage: tribune services <subcommand> [options] [args]

  Subcommands for registering and deregistering services with the local agent.

      $ tribune services register -name=web -port=8080
      $ tribune services register web.hcl
      $ tribune services deregister -id=web

  Ask any subcommand for -help for its options."#;

/// `services ...`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    match group(args, HELP, SUBCOMMANDS, ctx) {
        Ok(("register", rest)) => register(rest, ctx).await,
        Ok((_, rest)) => deregister(rest, ctx).await,
        Err(code) => code,
    }
}

const REGISTER_HELP: &str = r#"Usage: tribune services register [options] [FILE...]

  Registers one or more services with the local agent, from service definition
  files (HCL or JSON, with "service" or "services" blocks as in agent
  configuration) or from flags. Deregister them when done with
  "tribune services deregister".

      $ tribune services register web.json
      $ tribune services register -name=web -port=8080 -tag=v1 -meta=env=prod"#;

fn register_flags() -> FlagSet {
    let flags = FlagSet::new("services register")
        .value(
            "address",
            "Address of the service to register for arg-based registration.",
        )
        .value(
            "id",
            "ID of the service to register for arg-based registration. Defaults to -name.",
        )
        .value(
            "kind",
            "The service's kind (connect-proxy, mesh-gateway, ...).",
        )
        .multi(
            "meta",
            "Metadata to set on the service, formatted as key=value. May be repeated.",
        )
        .value(
            "name",
            "Name of the service to register for arg-based registration.",
        )
        .value(
            "port",
            "Port of the service to register for arg-based registration.",
        )
        .value(
            "socket",
            "Path to the Unix domain socket to register (conflicts with address and port).",
        )
        .multi("tag", "Tag to add to the service. May be repeated.")
        .multi(
            "tagged-address",
            "Tagged address to set on the service, formatted as key=host:port. May be repeated.",
        );
    tenancy_flags(server_flags(client_flags(flags)))
}

/// Go's `net.SplitHostPort` plus a numeric port, as `api.ParseServiceAddr` does.
fn parse_service_addr(text: &str) -> Result<ServiceAddress, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("address {text}: missing ']' in address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("address {text}: missing port in address"))?;
        (host, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("address {text}: missing port in address"))?;
        if host.contains(':') {
            return Err(format!("address {text}: too many colons in address"));
        }
        (host, port)
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("strconv.Atoi: parsing {port:?}: invalid syntax"))?;
    Ok(ServiceAddress {
        address: host.to_owned(),
        port,
    })
}

/// Fills what a file left empty from the flags (Consul's `CombineArgs`): scalar
/// flags only where the file has nothing, metadata and tagged addresses merged with
/// the flags winning, flag tags appended.
fn combine(file: &mut AgentServiceRegistration, flags: &AgentServiceRegistration) {
    let fill = |target: &mut String, value: &String| {
        if target.is_empty() && !value.is_empty() {
            target.clone_from(value);
        }
    };
    fill(&mut file.id, &flags.id);
    fill(&mut file.name, &flags.name);
    fill(&mut file.address, &flags.address);
    fill(&mut file.kind, &flags.kind);
    fill(&mut file.socket_path, &flags.socket_path);
    if file.port == 0 {
        file.port = flags.port;
    }
    file.meta
        .extend(flags.meta.iter().map(|(k, v)| (k.clone(), v.clone())));
    file.tagged_addresses.extend(
        flags
            .tagged_addresses
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    file.tags.extend(flags.tags.iter().cloned());
}

async fn register(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = register_flags();
    let p = match parse(&flags, args, REGISTER_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let parsed_flags = (
        number_flag::<u16>(&p, "port"),
        map_flag(&p, "meta"),
        map_flag(&p, "tagged-address"),
    );
    let (port, meta, tagged) = match parsed_flags {
        (Ok(port), Ok(meta), Ok(tagged)) => (port.unwrap_or(0), meta, tagged),
        (Err(msg), _, _) | (_, Err(msg), _) | (_, _, Err(msg)) => {
            return flag_error(ctx, &flags, REGISTER_HELP, &msg)
        }
    };
    let mut from_flags = AgentServiceRegistration {
        kind: p.get("kind").unwrap_or("").to_owned(),
        id: p.get("id").unwrap_or("").to_owned(),
        name: p.get("name").unwrap_or("").to_owned(),
        address: p.get("address").unwrap_or("").to_owned(),
        port,
        socket_path: p.get("socket").unwrap_or("").to_owned(),
        tags: p.all("tag").to_vec(),
        meta: meta.into_iter().collect(),
        ..Default::default()
    };
    for (tag, addr) in tagged {
        match parse_service_addr(&addr) {
            Ok(addr) => {
                from_flags.tagged_addresses.insert(tag, addr);
            }
            Err(err) => {
                ctx.error(&format!("Invalid Tagged Address: {err}"));
                return 1;
            }
        }
    }
    if p.args.is_empty() && from_flags.name.is_empty() {
        ctx.error("Service registration requires at least one argument or flags.");
        return 1;
    }
    if !p.args.is_empty() && !from_flags.name.is_empty() {
        ctx.error("Service registration requires arguments or -id, not both.");
        return 1;
    }
    let mut registrations = Vec::new();
    for file in &p.args {
        match service_def::read_file(std::path::Path::new(file)) {
            Ok(defs) => registrations.extend(defs),
            Err(err) => {
                ctx.error(&format!("Error: {err}"));
                return 1;
            }
        }
    }
    for registration in &mut registrations {
        combine(registration, &from_flags);
    }
    if registrations.is_empty() {
        registrations.push(from_flags);
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for registration in &registrations {
        if let Err(err) = client.agent().service_register(registration).await {
            ctx.error(&format!(
                "Error registering service {:?}: {err}",
                registration.name
            ));
            return 1;
        }
        ctx.info(format!("Registered service: {}", registration.name));
    }
    0
}

const DEREGISTER_HELP: &str = r#"Usage: tribune services deregister [options] [FILE...]

  Deregisters services previously registered with the local agent, named by the
  definition files they were registered from, or by -id. This must run against
  the agent the services were registered with.

      $ tribune services deregister web.json db.json
      $ tribune services deregister -id=web"#;

async fn deregister(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = tenancy_flags(server_flags(client_flags(
        FlagSet::new("services deregister").value(
            "id",
            "ID to delete. This must not be set if arguments are given.",
        ),
    )));
    let p = match parse(&flags, args, DEREGISTER_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let flag_id = p.get("id").unwrap_or("");
    if p.args.is_empty() && flag_id.is_empty() {
        ctx.error("Service deregistration requires at least one argument or -id.");
        return 1;
    }
    if !p.args.is_empty() && !flag_id.is_empty() {
        ctx.error("Service deregistration requires arguments or -id, not both.");
        return 1;
    }
    let mut ids: Vec<String> = Vec::new();
    if p.args.is_empty() {
        ids.push(flag_id.to_owned());
    }
    for file in &p.args {
        match service_def::read_file(std::path::Path::new(file)) {
            // The agent defaults a service's ID to its name.
            Ok(defs) => ids.extend(
                defs.into_iter()
                    .map(|d| if d.id.is_empty() { d.name } else { d.id })
                    .filter(|id| !id.is_empty()),
            ),
            Err(err) => {
                ctx.error(&format!("Error: {err}"));
                return 1;
            }
        }
    }
    let client = match client(&p, ctx) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for id in ids {
        if let Err(err) = client.agent().service_deregister(&id).await {
            ctx.error(&format!("Error deregistering service {id:?}: {err}"));
            return 1;
        }
        ctx.info(format!("Deregistered service: {id}"));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, ok, run_at, status};
    use super::*;

    #[test]
    fn service_addresses() {
        assert_eq!(
            parse_service_addr("10.0.0.1:80").unwrap(),
            ServiceAddress {
                address: "10.0.0.1".into(),
                port: 80
            }
        );
        assert_eq!(parse_service_addr("[::1]:8080").unwrap().address, "::1");
        assert!(parse_service_addr("10.0.0.1").is_err());
        assert!(parse_service_addr("::1:80").is_err());
        assert!(parse_service_addr("h:port").is_err());
    }

    #[tokio::test]
    async fn register_from_flags() {
        let fake = fake(|_| ok("")).await;
        let r = run_at(
            &fake.addr,
            "services",
            &[
                "register",
                "-name=web",
                "-id=web-1",
                "-port",
                "8080",
                "-address=10.0.0.5",
                "-tag",
                "v1",
                "-tag=blue",
                "-meta",
                "env=prod",
                "-tagged-address",
                "lan=10.0.0.5:8080",
            ],
            b"",
        )
        .await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "Registered service: web\n"),
            "{}",
            r.err
        );
        let req = &fake.requests()[0];
        assert_eq!(
            (req.method.as_str(), req.path()),
            ("PUT", "/v1/agent/service/register")
        );
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "ID": "web-1", "Name": "web", "Tags": ["v1", "blue"], "Port": 8080,
                "Address": "10.0.0.5", "Meta": {"env": "prod"},
                "TaggedAddresses": {"lan": {"Address": "10.0.0.5", "Port": 8080}}
            })
        );
    }

    #[tokio::test]
    async fn register_from_hcl_file_combines_flags() {
        let fake = fake(|_| ok("")).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.hcl");
        std::fs::write(
            &file,
            "service {\n  name = \"web\"\n  port = 80\n  tags = [\"file\"]\n  check {\n    ttl = \"30s\"\n  }\n}\n",
        )
        .unwrap();
        let file = file.display().to_string();
        let r = run_at(
            &fake.addr,
            "services",
            &["register", "-tag=flag", "-port=9", &file],
            b"",
        )
        .await;
        assert_eq!(r.out, "Registered service: web\n", "{}", r.err);
        let body: serde_json::Value = serde_json::from_slice(&fake.requests()[0].body).unwrap();
        assert_eq!(body["Port"], 80);
        assert_eq!(body["Tags"], serde_json::json!(["file", "flag"]));
        assert_eq!(body["Check"], serde_json::json!({"ttl": "30s"}));

        let r = run_at(&fake.addr, "services", &["deregister", &file], b"").await;
        assert_eq!(r.out, "Deregistered service: web\n", "{}", r.err);
        assert_eq!(
            fake.requests()[1].path(),
            "/v1/agent/service/deregister/web"
        );
    }

    #[tokio::test]
    async fn argument_errors() {
        let fake = fake(|_| status(400, "Invalid service address")).await;
        let a = fake.addr.as_str();
        let cases: &[(&[&str], &str)] = &[
            (
                &["register"],
                "Service registration requires at least one argument or flags.\n",
            ),
            (
                &["register", "-name=x", "f.json"],
                "Service registration requires arguments or -id, not both.\n",
            ),
            (
                &["register", "-name=x", "-port=high"],
                "invalid value \"high\" for flag -port: parse error\n",
            ),
            (
                &["register", "-name=x", "-tagged-address=lan=nope"],
                "Invalid Tagged Address: ",
            ),
            (
                &["register", "/nonexistent.json"],
                "Error: failed to read /nonexistent.json",
            ),
            (
                &["deregister"],
                "Service deregistration requires at least one argument or -id.\n",
            ),
            (
                &["deregister", "-id=x", "f.json"],
                "Service deregistration requires arguments or -id, not both.\n",
            ),
        ];
        for (args, message) in cases {
            let r = run_at(a, "services", args, b"").await;
            assert_eq!(r.code, 1, "{args:?}");
            assert!(r.err.starts_with(message), "{args:?}: {}", r.err);
        }
        assert!(fake.requests().is_empty());
        let r = run_at(a, "services", &["register", "-name=web"], b"").await;
        assert_eq!(
            r.err,
            "Error registering service \"web\": Unexpected response code: 400 (Invalid service address)\n"
        );
        let r = run_at(a, "services", &["deregister", "-id=a/b"], b"").await;
        assert_eq!(r.code, 1);
        assert_eq!(
            fake.requests()[1].path(),
            "/v1/agent/service/deregister/a%2Fb"
        );
    }
}
