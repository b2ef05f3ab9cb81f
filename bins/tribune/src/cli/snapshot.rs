//! `snapshot save|restore|inspect`: point-in-time archives of the servers' state,
//! over `/v1/snapshot`, with Consul's messages (`command/snapshot/...`).
//!
//! The archive is Consul's gzipped tar ([`tribune_types::archive`]), with
//! SHA-256 sums of its files, so every command verifies it: `save` streams the
//! download into `FILE.unverified`, reads that back and checks it before
//! renaming it into place (as Consul does), `restore` refuses a damaged file
//! before sending anything, and `inspect` reports the metadata of a file that
//! verifies. Files are streamed, never read whole: an archive is as large as
//! the servers' state.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use tribune_types::archive::{read_archive, ArchiveMeta};
use tribune_types::goflag::FlagSet;

use super::format::tabwrite;
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
    let flags = server_flags(client_flags(FlagSet::new("snapshot save")));
    let (p, file, client) = match setup(&flags, args, SAVE_HELP, ctx) {
        Ok(v) => v,
        Err(code) => return code,
    };
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
    let flags = FlagSet::new("snapshot inspect").value("format", "Output format {pretty|json}");
    let p = match parse(&flags, args, INSPECT_HELP, ctx) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let file = match file_arg(&p.args, ctx) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let meta = match File::open(file) {
        Ok(f) => read_archive(BufReader::new(f), &mut std::io::sink()),
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
    match p.get("format").unwrap_or("pretty") {
        "pretty" => ctx.info(inspect_pretty(&meta)),
        "json" => ctx.info(inspect_json(&meta)),
        other => {
            ctx.error(&format!(
                "Error outputting enhanced snapshot data: Unknown format: {other}"
            ));
            return 1;
        }
    }
    0
}

/// Consul's metadata table (`tabwriter` with padding 6, cells indented by one
/// space). Consul follows it with a per-record-type breakdown of its own state
/// format; Tribune's state is opaque to the CLI, so that part is left out.
fn inspect_pretty(meta: &ArchiveMeta) -> String {
    tabwrite(
        &format!(
            " ID\t{}\n Size\t{}\n Index\t{}\n Term\t{}\n Version\t{}",
            meta.id, meta.size, meta.index, meta.term, meta.version,
        ),
        6,
    )
}

/// Consul's `-format=json` (`json.MarshalIndent(info, "", "   ")`), with an empty
/// per-type breakdown for the same reason as [`inspect_pretty`].
fn inspect_json(meta: &ArchiveMeta) -> String {
    format!(
        "{{\n   \"Meta\": {{\n      \"ID\": {},\n      \"Size\": {},\n      \"Index\": {},\n      \"Term\": {},\n      \"Version\": {}\n   }},\n   \"Stats\": [],\n   \"TotalSize\": {}\n}}",
        serde_json::Value::from(meta.id.as_str()),
        meta.size,
        meta.index,
        meta.term,
        meta.version,
        meta.size,
    )
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
    async fn inspect_prints_consuls_metadata_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.snap");
        std::fs::write(&file, sample()).unwrap();
        let path = file.to_str().unwrap();
        let r = run_at("127.0.0.1:1", "snapshot", &["inspect", path], b"").await;
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(
            r.out,
            " ID           2-5-1477944140022\n Size         667\n Index        5\n Term         2\n Version      1\n"
        );
        let r = run_at(
            "127.0.0.1:1",
            "snapshot",
            &["inspect", "-format=json", path],
            b"",
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.err);
        let json: serde_json::Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(json["Meta"]["ID"], "2-5-1477944140022");
        assert_eq!(json["Meta"]["Size"], 667);
        assert!(r.out.starts_with("{\n   \"Meta\": {\n      \"ID\""));

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
