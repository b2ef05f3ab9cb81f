//! `snapshot save|restore|inspect`: point-in-time archives of the servers' state,
//! over `/v1/snapshot`, with Consul's messages (`command/snapshot/...`).
//!
//! The archive is Consul's gzipped tar ([`tribune_types::archive`]), with
//! SHA-256 sums of its files, so every command verifies it: `save` streams the
//! download into `FILE.unverified`, reads that back and checks it before
//! renaming it into place (as Consul does; `-append-filename` names the file
//! after the agent's version, datacenter, node and role), `restore` refuses a
//! damaged file before sending anything and streams it, and `inspect` reports
//! the metadata of a file that verifies, and its records by kind (and with
//! `-kvdetails` its KV entries by key prefix) in Consul's tables and names.
//! `save` and `restore` stream the file; `inspect` reads the state into memory
//! and decodes it (`StateStore::inspect_snapshot`; Consul's streams it from a
//! temporary file), so it needs a few times the state's size.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use tribune_types::archive::{read_archive, ArchiveMeta};
use tribune_types::goflag::FlagSet;

use super::format::tabwrite_min;
use super::http::{client, client_flags, query, server_flags};
use super::operator::go_quote;
use super::{group, parse, Ctx};

const SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "inspect",
        "Displays information about a Consul snapshot file",
    ),
    ("restore", "Restores snapshot of Consul server state"),
    ("save", "Saves snapshot of Consul server state"),
];

const HELP: &str = "Usage: tribune snapshot <subcommand> [options] [args]

  This command has subcommands for saving, restoring, and inspecting the state
  of the servers for disaster recovery. These are atomic, point-in-time
  snapshots which include key/value entries, service catalog, prepared queries,
  sessions, and ACLs.

  If ACLs are enabled, a management token must be supplied in order to perform
  snapshot operations.

  Create a snapshot:

      $ tribune snapshot save backup.snap

  Restore a snapshot:

      $ tribune snapshot restore backup.snap

  Inspect a snapshot:

      $ tribune snapshot inspect backup.snap

  For more examples, ask for subcommand help.";

/// `snapshot ...`
pub(crate) async fn run(args: &[String], ctx: &mut Ctx) -> i32 {
    let (sub, rest) = match group(args, HELP, SUBCOMMANDS, ctx) {
        Ok(found) => found,
        Err(code) => return code,
    };
    match sub {
        "save" => save(rest, ctx).await,
        "restore" => restore(rest, ctx).await,
        _ => inspect(rest, ctx),
    }
}

/// The one FILE argument, or Consul's complaint about the count.
fn file_arg<'a>(args: &'a [String], ctx: &mut Ctx) -> Result<&'a str, i32> {
    match args {
        [] => {
            ctx.error("Missing FILE argument");
            Err(1)
        }
        [file] => Ok(file),
        more => {
            ctx.error(&format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ));
            Err(1)
        }
    }
}

/// What `save` and `restore` start with: flags parsed, the one FILE argument and a
/// client (or the exit code after the error has been printed).
fn setup(
    flags: &FlagSet,
    args: &[String],
    help: &str,
    ctx: &mut Ctx,
) -> Result<
    (
        tribune_types::goflag::Parsed,
        String,
        tribune_client::Client,
    ),
    i32,
> {
    let p = parse(flags, args, help, ctx)?;
    let file = file_arg(&p.args, ctx)?.to_owned();
    let client = client(&p, ctx)?;
    Ok((p, file, client))
}

/// Opens an archive file and verifies it (every hash, by reading it through);
/// on failure prints `open_error` or Consul's verify message and returns the
/// exit code. The file comes back rewound.
fn open_verified(path: &Path, open_error: &str, ctx: &mut Ctx) -> Result<File, i32> {
    let checked = File::open(path)
        .map_err(|err| format!("{open_error}: {err}"))
        .and_then(|mut file| {
            read_archive(BufReader::new(&file), &mut std::io::sink())
                .map_err(|err| format!("Error verifying snapshot file: {err}"))?;
            file.seek(SeekFrom::Start(0))
                .map_err(|err| format!("{open_error}: {err}"))?;
            Ok(file)
        });
    checked.map_err(|msg| {
        ctx.error(&msg);
        1
    })
}

const SAVE_HELP: &str = r#"Usage: tribune snapshot save [options] FILE

  Retrieves an atomic, point-in-time snapshot of the state of the servers which
  includes key/value entries, service catalog, prepared queries, sessions, and
  ACLs. The file is verified before this command reports success.

  If ACLs are enabled, a management token must be supplied in order to perform
  snapshot operations.

  To create a snapshot from the leader server and save it to "backup.snap":

    $ tribune snapshot save backup.snap

  To create a potentially stale snapshot from any available server (useful if no
  leader is available):

    $ tribune snapshot save -stale backup.snap"#;

/// Removes the unverified download on every early return.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        // After a successful rename there is nothing left to remove.
        let _ = std::fs::remove_file(self.0);
    }
}

/// Creates `path` for writing with mode 0600: a snapshot holds ACL tokens.
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// `snapshot save [-stale] FILE`
async fn save(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(FlagSet::new("snapshot save"))).value(
        "append-filename",
        "Comma-separated parts to append to FILE's name before its extension: version, dc, node, status.",
    );
    let (p, mut file, client) = match setup(&flags, args, SAVE_HELP, ctx) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if let Some(parts) = p.get("append-filename").filter(|v| !v.is_empty()) {
        let parts: Vec<&str> = parts.split(',').collect();
        file = match client.agent().self_().await {
            Ok(me) => append_to_name(&file, &parts, &me),
            Err(err) => {
                ctx.error(&format!(
                    "Error connecting to Consul agent and fetching datacenter/version: {err}"
                ));
                return 1;
            }
        };
    }
    let unverified = PathBuf::from(format!("{file}.unverified"));
    let out = match create_private(&unverified) {
        Ok(f) => f,
        Err(err) => {
            ctx.error(&format!("Error creating unverified snapshot file: {err}"));
            return 1;
        }
    };
    // From here on a partly written or unverified file is no use to anyone.
    let _cleanup = RemoveOnDrop(&unverified);
    let mut out = BufWriter::with_capacity(256 << 10, out);
    let meta = match client.snapshot().save(&query(&p), &mut out).await {
        Ok(meta) => meta,
        Err(err) => {
            ctx.error(&format!("Error saving snapshot: {err}"));
            return 1;
        }
    };
    // Synced, so that what is verified and renamed is what is on disk.
    let written = out
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all());
    if let Err(err) = written {
        ctx.error(&format!("Error writing unverified snapshot file: {err}"));
        return 1;
    }
    // Verify what landed on disk, not what was sent: that is what a restore reads.
    if let Err(code) = open_verified(&unverified, "Error opening snapshot file for verify", ctx) {
        return code;
    }
    if let Err(err) = std::fs::rename(&unverified, &file) {
        ctx.error(&format!(
            "Error renaming {} to {}: {err}",
            go_quote(&unverified.to_string_lossy()),
            go_quote(&file)
        ));
        return 1;
    }
    ctx.info(format!(
        "Saved and verified snapshot to index {}",
        meta.index
    ));
    0
}

/// `-append-filename`: `backup.snap` becomes `backup-1.20.0-dc1-s1-leader.snap`
/// for `version,dc,node,status`. The parts always go in that order, whatever
/// the flag's order, and unknown ones are ignored, as in Consul.
fn append_to_name(file: &str, parts: &[&str], me: &tribune_client::AgentSelf) -> String {
    let path = Path::new(file);
    let (stem, ext) = match path.extension() {
        Some(ext) => (
            &file[..file.len() - ext.len() - 1],
            &file[file.len() - ext.len() - 1..],
        ),
        None => (file, ""),
    };
    let mut name = stem.to_owned();
    let leader = me
        .stats
        .get("consul")
        .and_then(|c| c.get("leader"))
        .map(|l| l == "true");
    let wanted = [
        ("version", Some(me.config.version.as_str())),
        ("dc", Some(me.config.datacenter.as_str())),
        ("node", Some(me.config.node_name.as_str())),
        (
            "status",
            leader.map(|l| if l { "leader" } else { "follower" }),
        ),
    ];
    for (part, value) in wanted {
        if let (true, Some(value)) = (parts.contains(&part), value) {
            name.push('-');
            name.push_str(value);
        }
    }
    name + ext
}

const RESTORE_HELP: &str = r#"Usage: tribune snapshot restore [options] FILE

  Restores an atomic, point-in-time snapshot of the state of the servers which
  includes key/value entries, service catalog, prepared queries, sessions, and
  ACLs. The file is verified before it is sent.

  Restores involve a potentially dangerous low-level Raft operation that is not
  designed to handle server failures during a restore. This command is primarily
  intended to be used when recovering from a disaster, restoring into a fresh
  cluster of servers.

  If ACLs are enabled, a management token must be supplied in order to perform
  snapshot operations.

  To restore a snapshot from the file "backup.snap":

    $ tribune snapshot restore backup.snap"#;

/// `snapshot restore FILE`
async fn restore(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = server_flags(client_flags(FlagSet::new("snapshot restore")));
    let (_, file, client) = match setup(&flags, args, RESTORE_HELP, ctx) {
        Ok(v) => v,
        Err(code) => return code,
    };
    // Consul leaves this to the servers; checking here means a truncated copy or a
    // wrong file never reaches them, and the message names the actual problem.
    let archive = match open_verified(Path::new(&file), "Error opening snapshot file", ctx) {
        Ok(f) => f,
        Err(code) => return code,
    };
    if let Err(err) = client.snapshot().restore(archive).await {
        ctx.error(&format!("Error restoring snapshot: {err}"));
        return 1;
    }
    ctx.info("Restored snapshot");
    0
}

const INSPECT_HELP: &str = r#"Usage: tribune snapshot inspect [options] FILE

  Displays information about a snapshot file on disk.

  To inspect the file "backup.snap":

    $ tribune snapshot inspect backup.snap"#;

/// `snapshot inspect [-format=pretty|json] FILE`: reads the file only, no agent.
fn inspect(args: &[String], ctx: &mut Ctx) -> i32 {
    let flags = FlagSet::new("snapshot inspect")
        .bool(
            "kvdetails",
            "Provides a detailed KV space usage breakdown for any KV data that's been stored.",
        )
        .value(
            "kvdepth",
            "Can only be used with -kvdetails. The key prefix depth used to breakdown KV store data. Defaults to 2.",
        )
        .value(
            "kvfilter",
            "Can only be used with -kvdetails. Limits KV key breakdown using this prefix filter.",
        )
        .value("format", "Output format {pretty|json}");
    let p = match parse(&flags, args, INSPECT_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let file = match file_arg(&p.args, ctx) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let depth = match p.get("kvdepth").map(str::parse::<usize>) {
        None => 2,
        Some(Ok(d)) => d,
        Some(Err(_)) => {
            ctx.error(&format!(
                "invalid value {:?} for flag -kvdepth: parse error",
                p.get("kvdepth").unwrap_or_default()
            ));
            return 1;
        }
    };
    let mut state = Vec::new();
    let meta = match File::open(file) {
        Ok(f) => read_archive(BufReader::new(f), &mut state),
        Err(err) => {
            ctx.error(&format!("Error opening snapshot file: {err}"));
            return 1;
        }
    };
    let meta = match meta {
        Ok(m) => m,
        Err(err) => {
            ctx.error(&format!("Error reading snapshot: {err}"));
            return 1;
        }
    };
    let contents = match tribune_state::StateStore::inspect_snapshot(&state) {
        Ok(c) => c,
        Err(err) => {
            ctx.error(&format!("Error extracting snapshot data: {err}"));
            return 1;
        }
    };
    drop(state);
    let stats = Stats::of(
        &contents,
        p.flag("kvdetails") == Some(true),
        depth,
        p.get("kvfilter"),
    );
    match p.get("format").unwrap_or("pretty") {
        "pretty" => ctx.info(inspect_pretty(&meta, &stats)),
        "json" => ctx.info(inspect_json(&meta, &stats)),
        other => {
            ctx.error(&format!(
                "Error outputting enhanced snapshot data: Unknown format: {other}"
            ));
            return 1;
        }
    }
    0
}

/// One row of an inspect table: a record kind or a KV key prefix.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    name: String,
    sum: usize,
    count: usize,
}

/// The tables `inspect` prints.
struct Stats {
    types: Vec<Row>,
    total: usize,
    /// With `-kvdetails`: KV entries by key prefix.
    kv: Option<(Vec<Row>, usize)>,
}

impl Stats {
    fn of(
        c: &tribune_state::SnapshotContents,
        kv: bool,
        depth: usize,
        filter: Option<&str>,
    ) -> Stats {
        let types = sorted(
            c.records
                .iter()
                .map(|r| Row {
                    name: r.name.to_owned(),
                    sum: r.size,
                    count: r.count,
                })
                .collect(),
        );
        let total = types.iter().map(|r| r.sum).sum();
        let kv = kv.then(|| {
            let mut by_prefix: std::collections::HashMap<String, Row> = Default::default();
            for (key, size) in &c.kv {
                if filter.is_some_and(|f| !key.starts_with(f)) {
                    continue;
                }
                // Consul's breakdown: the first `depth` segments of the key.
                let prefix = key.split('/').take(depth).collect::<Vec<_>>().join("/");
                let row = by_prefix.entry(prefix.clone()).or_insert(Row {
                    name: prefix,
                    sum: 0,
                    count: 0,
                });
                row.sum += size;
                row.count += 1;
            }
            let rows = sorted(by_prefix.into_values().collect());
            let total = rows.iter().map(|r| r.sum).sum();
            (rows, total)
        });
        Stats { types, total, kv }
    }
}

/// Largest first, then by name, as Consul sorts.
fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by(|a, b| b.sum.cmp(&a.sum).then_with(|| a.name.cmp(&b.name)));
    rows
}

/// Consul's `ByteSize`: one decimal, `.0` dropped, binary units.
fn byte_size(bytes: usize) -> String {
    const UNITS: [(usize, &str); 4] = [
        (1 << 40, "TB"),
        (1 << 30, "GB"),
        (1 << 20, "MB"),
        (1 << 10, "KB"),
    ];
    if bytes == 0 {
        return "0".into();
    }
    let (value, unit) = UNITS
        .iter()
        .find(|(size, _)| bytes >= *size)
        .map_or((bytes as f64, "B"), |(size, unit)| {
            (bytes as f64 / *size as f64, unit)
        });
    let text = format!("{value:.1}");
    format!("{}{unit}", text.strip_suffix(".0").unwrap_or(&text))
}

/// Consul's pretty format: the metadata and the record kinds in one
/// `tabwriter` (min width 8, padding 6), then with `-kvdetails` the key
/// prefixes in another (min width 30, padding 12); cells indented by a space.
fn inspect_pretty(meta: &ArchiveMeta, stats: &Stats) -> String {
    let mut text = format!(
        " ID\t{}\n Size\t{}\n Index\t{}\n Term\t{}\n Version\t{}\n",
        meta.id, meta.size, meta.index, meta.term, meta.version,
    );
    table(&mut text, "Type", &stats.types, stats.total);
    let mut out = tabwrite_min(&text, 8, 6);
    if let Some((rows, total)) = &stats.kv {
        let mut text = String::from("\n");
        table(&mut text, "Key Name", rows, *total);
        out.push_str(&tabwrite_min(&text, 30, 12));
    }
    out
}

/// One of `inspect`'s tables, as tab-separated cells.
fn table(text: &mut String, title: &str, rows: &[Row], total: usize) {
    text.push_str(&format!("\n {title}\tCount\tSize\n ----\t----\t----"));
    for r in rows {
        text.push_str(&format!("\n {}\t{}\t{}", r.name, r.count, byte_size(r.sum)));
    }
    text.push_str(&format!(
        "\n ----\t----\t----\n Total\t\t{}",
        byte_size(total)
    ));
}

/// Consul's `-format=json` (`json.MarshalIndent(info, "", "   ")` of its
/// `OutputFormat`).
fn inspect_json(meta: &ArchiveMeta, stats: &Stats) -> String {
    // Consul's `StatsKV` is null without `-kvdetails` and when no key matched.
    let (kv, kv_total) = match &stats.kv {
        Some((rows, total)) if !rows.is_empty() => {
            (serde_json::to_value(rows).unwrap_or_default(), *total)
        }
        _ => (serde_json::Value::Null, 0),
    };
    let out = serde_json::json!({
        "Meta": {
            "ID": meta.id,
            "Size": meta.size,
            "Index": meta.index,
            "Term": meta.term,
            "Version": meta.version,
        },
        "Stats": stats.types,
        "StatsKV": kv,
        "TotalSize": stats.total,
        "TotalSizeKV": kv_total,
    });
    super::format::marshal_indent(&out, b"   ").unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fake, run_at, status};
    use super::*;

    fn archive_of(state: &[u8]) -> Vec<u8> {
        let meta = ArchiveMeta::new(5, 2, 1_477_944_140_022, state.len() as u64);
        tribune_types::archive::write_archive(Vec::new(), &meta, &mut &state[..]).unwrap()
    }

    fn sample() -> Vec<u8> {
        archive_of(&[7; 667])
    }

    #[tokio::test]
    async fn inspect_prints_consuls_tables() {
        // A real state: four KV entries under three prefixes.
        let state = tribune_state::StateStore::new();
        for (i, key) in ["vault/core/a", "vault/core/b", "vault/sys/x", "top"]
            .iter()
            .enumerate()
        {
            let set = tribune_types::model::ops::WriteRequest::kv_set(*key, vec![1; 100]);
            state
                .apply(i as u64 + 1, &tribune_state::Command::Request(set))
                .unwrap();
        }
        let state = state.snapshot();
        let size = state.len();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.snap");
        std::fs::write(&file, archive_of(&state)).unwrap();
        let path = file.to_str().unwrap();
        let r = run_at("127.0.0.1:1", "snapshot", &["inspect", path], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        let lines: Vec<&str> = r.out.lines().collect();
        assert_eq!(
            lines[..6],
            [
                " ID           2-5-1477944140022",
                &format!(" Size         {size}"),
                " Index        5",
                " Term         2",
                " Version      1",
                "",
            ]
        );
        // Record kinds under Consul's names, largest first, in columns as wide
        // as the widest cell plus 6.
        assert_eq!(lines[6], " Type       Count      Size");
        assert_eq!(lines[7], " ----       ----       ----");
        assert!(lines[8].starts_with(" KVS        4          "), "{}", r.out);
        assert!(
            lines.iter().any(|l| l.starts_with(" Index      ")),
            "{}",
            r.out
        );
        assert!(lines.last().unwrap().starts_with(" Total                 "));
        assert!(!r.out.contains("Key Name"));

        let r = run_at(
            "127.0.0.1:1",
            "snapshot",
            &["inspect", "-kvdetails", "-kvfilter=vault/", path],
            b"",
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.err);
        let kv: Vec<&str> = r.out.split("\n\n").nth(2).unwrap().lines().collect();
        let row = |name: &str, count: &str, size: &str| format!(" {name:<29}{count:<30}{size}");
        assert_eq!(kv[0], row("Key Name", "Count", "Size"));
        assert_eq!(kv[1], row("----", "----", "----"));
        assert!(kv[2].starts_with(&row("vault/core", "2", "")), "{}", r.out);
        assert!(kv[3].starts_with(&row("vault/sys", "1", "")), "{}", r.out);
        assert_eq!(kv[4], row("----", "----", "----"));
        assert!(!r.out.contains(" top "), "filtered out: {}", r.out);

        let r = run_at(
            "127.0.0.1:1",
            "snapshot",
            &["inspect", "-format=json", "-kvdetails", "-kvdepth=1", path],
            b"",
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.err);
        let json: serde_json::Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(json["Meta"]["ID"], "2-5-1477944140022");
        assert_eq!(json["Meta"]["Size"], size);
        let kvs = &json["Stats"][0];
        assert_eq!((&kvs["Name"], &kvs["Count"]), (&"KVS".into(), &4.into()));
        assert_eq!(json["StatsKV"][0]["Name"], "vault");
        assert_eq!(json["StatsKV"][0]["Count"], 3);
        assert_eq!(json["StatsKV"][1]["Name"], "top");
        let r = run_at(
            "127.0.0.1:1",
            "snapshot",
            &[
                "inspect",
                "-format=json",
                "-kvdetails",
                "-kvfilter=nothing/",
                path,
            ],
            b"",
        )
        .await;
        let json: serde_json::Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(json["StatsKV"], serde_json::Value::Null, "{}", r.out);
        assert!(r.out.starts_with("{\n   \"Meta\": {\n      \"ID\""));
        assert_eq!(byte_size(12_595), "12.3KB");
        assert_eq!(byte_size(2048), "2KB");
        assert_eq!(byte_size(285), "285B");

        let mut damaged = sample();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0xff;
        std::fs::write(&file, damaged).unwrap();
        let r = run_at("127.0.0.1:1", "snapshot", &["inspect", path], b"").await;
        assert_eq!(r.code, 1);
        assert!(
            r.err.starts_with("Error reading snapshot: failed to"),
            "{}",
            r.err
        );

        let r = run_at("127.0.0.1:1", "snapshot", &["inspect"], b"").await;
        assert_eq!((r.code, r.err.as_str()), (1, "Missing FILE argument\n"));
        let r = run_at("127.0.0.1:1", "snapshot", &["inspect", "a", "b"], b"").await;
        assert_eq!(r.err, "Too many arguments (expected 1, got 2)\n");
        let missing = dir.path().join("nope.snap");
        let r = run_at(
            "127.0.0.1:1",
            "snapshot",
            &["inspect", missing.to_str().unwrap()],
            b"",
        )
        .await;
        assert!(
            r.err.starts_with("Error opening snapshot file: "),
            "{}",
            r.err
        );
    }

    #[tokio::test]
    async fn save_verifies_before_renaming_into_place() {
        let good = sample();
        let served = good.clone();
        let fake = fake(move |req| match (req.path(), req.query()) {
            ("/v1/snapshot", "stale=") => (200, Vec::new(), b"not a snapshot".to_vec()),
            ("/v1/snapshot", _) => (
                200,
                vec![("X-Consul-Index", "5".to_owned())],
                served.clone(),
            ),
            _ => status(404, ""),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.snap");
        let path = file.to_str().unwrap();
        let r = run_at(&fake.addr, "snapshot", &["save", path], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(r.out, "Saved and verified snapshot to index 5\n");
        assert_eq!(std::fs::read(&file).unwrap(), good);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // A download that does not verify is not kept, under either name.
        let bad = dir.path().join("bad.snap");
        let r = run_at(
            &fake.addr,
            "snapshot",
            &["save", "-stale", bad.to_str().unwrap()],
            b"",
        )
        .await;
        assert_eq!(r.code, 1);
        assert_eq!(
            r.err,
            "Error verifying snapshot file: failed to decompress snapshot: gzip: invalid header\n"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["backup.snap"]);

        let r = run_at("127.0.0.1:1", "snapshot", &["save", path], b"").await;
        assert_eq!(r.code, 1);
        assert!(r.err.starts_with("Error saving snapshot: "), "{}", r.err);
    }

    #[tokio::test]
    async fn append_filename_names_the_file_as_consul_does() {
        let served = sample();
        let fake = fake(move |req| match req.path() {
            "/v1/snapshot" => (200, vec![("X-Consul-Index", "5".to_owned())], served.clone()),
            "/v1/agent/self" => (
                200,
                Vec::new(),
                br#"{"Config":{"Version":"1.20.0","Datacenter":"dc1","NodeName":"s1"},"Stats":{"consul":{"leader":"true"}}}"#.to_vec(),
            ),
            _ => status(404, ""),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.snap");
        let path = file.to_str().unwrap();
        // The parts go in Consul's order whatever the flag's, unknown ones ignored.
        let r = run_at(
            &fake.addr,
            "snapshot",
            &[
                "save",
                "-append-filename=status,node,bogus,version,dc",
                path,
            ],
            b"",
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(dir.path().join("backup-1.20.0-dc1-s1-leader.snap").exists());
        assert!(!file.exists());
        let bare = dir.path().join("backup");
        let r = run_at(
            &fake.addr,
            "snapshot",
            &["save", "-append-filename=dc", bare.to_str().unwrap()],
            b"",
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(dir.path().join("backup-dc1").exists());
    }

    #[tokio::test]
    async fn restore_uploads_only_a_verified_file() {
        let good = sample();
        let accepted = good.clone();
        let fake = fake(move |req| match (req.method.as_str(), req.path()) {
            ("PUT", "/v1/snapshot") if req.body != accepted => {
                status(400, "failed to read snapshot: unexpected EOF")
            }
            ("PUT", "/v1/snapshot") => (200, Vec::new(), Vec::new()),
            _ => status(404, ""),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.snap");
        let path = file.to_str().unwrap();
        std::fs::write(&file, &good).unwrap();
        let r = run_at(&fake.addr, "snapshot", &["restore", path], b"").await;
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "Restored snapshot\n"),
            "{}",
            r.err
        );
        let put = fake.requests().last().cloned().unwrap();
        assert_eq!(put.method, "PUT");
        assert_eq!(put.body, good);

        // A corrupt file is refused here, without a request.
        std::fs::write(&file, &good[..good.len() - 1]).unwrap();
        let sent = fake.requests().len();
        let r = run_at(&fake.addr, "snapshot", &["restore", path], b"").await;
        assert_eq!(r.code, 1);
        assert!(
            r.err
                .starts_with("Error verifying snapshot file: failed to"),
            "{}",
            r.err
        );
        assert_eq!(fake.requests().len(), sent);

        // The server's refusal is reported as such.
        std::fs::write(&file, archive_of(b"")).unwrap();
        let r = run_at(&fake.addr, "snapshot", &["restore", path], b"").await;
        assert_eq!(
            (r.code, r.err.as_str()),
            (
                1,
                "Error restoring snapshot: Unexpected response code: 400 (failed to read snapshot: unexpected EOF)\n"
            )
        );
    }

    #[tokio::test]
    async fn bare_group_prints_usage() {
        let r = run_at("127.0.0.1:1", "snapshot", &[], b"").await;
        assert_eq!(r.code, 1);
        assert!(r.out.starts_with("Usage: tribune snapshot <subcommand>"));
        assert!(r.out.contains("    inspect    Displays"), "{}", r.out);
    }
}
