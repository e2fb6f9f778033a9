//! End to end: the compiled `satchel` binary runs the service (`satchel serve` as a child
//! process) and drives it as a user would, through the client commands. Runs on SQLite, and on
//! PostgreSQL too when `DATABASE_URL` names a server (a fresh database per test).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_satchel");

/// A running `satchel serve` and the environment its commands share; killed on drop.
struct Server {
    child: Child,
    data: tempfile::TempDir,
    url: String,
    database_url: Option<String>,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Content that is not all one byte, so offsets matter.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.text()))
    }
    /// Asserts success and returns self.
    fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "expected success; stdout: {}\nstderr: {}",
            self.text(),
            self.stderr
        );
        self
    }
    /// Asserts a failure with exit code 1 and `error: <code>:` on stderr.
    fn fails_with(self, code: &str) -> Run {
        assert_eq!(
            self.code,
            Some(1),
            "expected exit 1 with {code}; stdout: {}\nstderr: {}",
            self.text(),
            self.stderr
        );
        assert!(
            self.stderr.contains(&format!("error: {code}:")),
            "expected `error: {code}:` on stderr, got: {}",
            self.stderr
        );
        self
    }
}

/// A `satchel` command with only the given environment (no inherited configuration).
fn command(env: &[(&str, &str)], cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().current_dir(cwd).stdin(Stdio::null());
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Server {
    fn config_env(&self) -> Vec<(&str, &str)> {
        config_env(self.data.path(), self.database_url.as_deref())
    }

    /// A server-side command (`migrate`, `token`, `gc`, `fsck`) on this server's configuration.
    fn admin(&self, args: &[&str]) -> Run {
        let out = command(&self.config_env(), self.data.path())
            .args(args)
            .output()
            .expect("run satchel");
        Run::from(out)
    }

    /// A client command with this server's URL and token.
    fn client(&self, args: &[&str]) -> Run {
        self.client_as(&self.token, args)
    }

    fn client_as(&self, token: &str, args: &[&str]) -> Run {
        let env = [("SATCHEL_URL", self.url.as_str()), ("SATCHEL_TOKEN", token)];
        let out = command(&env, self.data.path())
            .args(args)
            .output()
            .expect("run satchel");
        Run::from(out)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.data.path().join(name)
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }
}

fn config_env<'a>(data: &'a Path, database_url: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("APP_DATA_DIR", data.to_str().expect("utf-8 temp dir")),
        ("CLAMAV_SERVICE_ENABLED", "false"),
    ];
    if let Some(url) = database_url {
        env.push(("DATABASE_URL", url));
    }
    env
}

/// Migrates, starts `satchel serve`, waits for `/healthz`, mints a token for alice.
fn start(database_url: Option<String>) -> Server {
    let data = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");

    let migrate = Run::from(
        command(
            &config_env(data.path(), database_url.as_deref()),
            data.path(),
        )
        .arg("migrate")
        .output()
        .expect("run satchel migrate"),
    )
    .ok();
    let backend = if database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(
        migrate.text().trim(),
        format!("migrations applied to {backend}")
    );

    let log = std::fs::File::create(data.path().join("server.log")).expect("log file");
    let mut env = config_env(data.path(), database_url.as_deref());
    env.push(("BIND_ADDRESS", &bind));
    env.push(("RUST_LOG", "info"));
    let child = command(&env, data.path())
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start satchel serve");
    let mut server = Server {
        child,
        url: format!("http://{bind}"),
        data,
        database_url,
        token: String::new(),
    };
    wait_healthy(&mut server);

    let token = server.admin(&["token", "--user", "alice"]).ok().text();
    let token = token.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token:?}");
    server.token = token;
    server
}

fn wait_healthy(server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("{}/healthz", server.url);
    loop {
        if let Some(status) = server.child.try_wait().expect("poll the server") {
            panic!(
                "satchel serve exited with {status}:\n{}",
                server.server_log()
            );
        }
        if http_get(&url).is_ok_and(|(status, _)| status == 200) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "the server did not become healthy:\n{}",
                server.server_log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain GET (no auth), outside the CLI under test.
fn http_get(url: &str) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let response = reqwest::get(url).await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?.to_vec()))
    })
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{key}` in {value}"))
}

/// Everything a user does, against one running server.
fn scenario(server: &Server) {
    let small = b"hello, satchel\n".to_vec();
    let big = pattern(3 * 1024 * 1024 + 17);
    std::fs::write(server.path("hello.txt"), &small).unwrap();
    std::fs::write(server.path("big.bin"), &big).unwrap();
    let hello_path = server.path("hello.txt");
    let hello = hello_path.to_str().unwrap();
    let big_path = server.path("big.bin");
    let big_file = big_path.to_str().unwrap();

    // put: human line, then JSON.
    let put = server.client(&["put", hello]).ok().text();
    assert!(
        put.starts_with("stored /hello.txt (15 bytes, text/plain) id "),
        "{put}"
    );
    let hello_id = put.trim().rsplit(' ').next().unwrap().to_owned();

    let put_big = server
        .client(&[
            "put",
            big_file,
            "--path",
            "/docs/",
            "--metadata",
            r#"{"k":"v"}"#,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(str_field(&put_big, "path"), "/docs/big.bin");
    assert_eq!(put_big["size_bytes"], big.len() as u64);
    assert_eq!(str_field(&put_big, "checksum"), sha256_hex(&big));
    assert_eq!(put_big["metadata"]["k"], "v");
    let big_id = str_field(&put_big, "id").to_owned();
    let workspace_id = str_field(&put_big, "workspace_id").to_owned();

    // Conflicts: refused by default (also while a large body is still streaming), overwrite
    // keeps the id, rename picks a free name.
    server
        .client(&["put", big_file, "--path", "/docs/big.bin"])
        .fails_with("path_exists");
    let changed = pattern(1000);
    std::fs::write(server.path("big.bin"), &changed).unwrap();
    let over = server
        .client(&[
            "put",
            big_file,
            "--path",
            "/docs/big.bin",
            "--overwrite",
            "--checksum",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(str_field(&over, "id"), big_id);
    assert_eq!(over["size_bytes"], 1000);
    let over_human = server
        .client(&[
            "put",
            big_file,
            "--path",
            "/docs/big.bin",
            "--on-conflict",
            "overwrite",
        ])
        .ok()
        .text();
    assert!(
        over_human.starts_with("overwrote /docs/big.bin"),
        "{over_human}"
    );
    let renamed = server
        .client(&[
            "put",
            big_file,
            "--path",
            "/docs/big.bin",
            "--on-conflict",
            "rename",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(str_field(&renamed, "path"), "/docs/big (1).bin");
    let session_put = server
        .client(&[
            "put",
            hello,
            "--session",
            "chat-1",
            "--mime-type",
            "text/markdown",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        str_field(&session_put, "path"),
        "/sessions/chat-1/hello.txt"
    );
    assert_eq!(str_field(&session_put, "mime_type"), "text/markdown");
    server
        .client(&["put", server.path("missing").to_str().unwrap()])
        .fails_with("io");
    server
        .client(&["put", hello, "--path", "/x", "--metadata", "[1]"])
        .fails_with("invalid_input");

    // ls: table and JSON, folders, sessions, limits.
    let table = server.client(&["ls"]).ok().text();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[0].starts_with("ID") && lines[0].ends_with("PATH"),
        "{table}"
    );
    assert!(
        table.contains(&hello_id) && table.contains("/hello.txt"),
        "{table}"
    );
    assert!(table.contains("/docs/big (1).bin"), "{table}");
    let all = server.client(&["ls", "--json"]).ok().json();
    assert_eq!(all["files"].as_array().unwrap().len(), 4);
    assert_eq!(all["has_more"], false);
    let docs = server.client(&["ls", "/docs", "--json"]).ok().json();
    assert_eq!(docs["files"].as_array().unwrap().len(), 2);
    let session = server
        .client(&["ls", "--session", "chat-1", "--json"])
        .ok()
        .json();
    assert_eq!(session["files"].as_array().unwrap().len(), 1);
    let across = server
        .client(&["ls", "/sessions", "--all-sessions", "--json"])
        .ok()
        .json();
    assert_eq!(across["files"].as_array().unwrap().len(), 1);
    let one = server.client(&["ls", "--limit", "1", "--json"]).ok().json();
    assert_eq!(one["files"].as_array().unwrap().len(), 1);
    assert_eq!(one["has_more"], true);
    let empty = server.client(&["ls", "/nothing-here"]).ok();
    assert!(empty.stdout.is_empty());

    // get: to a file (replacing one), to stdout, by path; bytes identical.
    let out = server.path("out.bin");
    std::fs::write(&out, b"old content").unwrap();
    server
        .client(&["get", &big_id, "-o", out.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(&out).unwrap(), changed);
    let stdout = server.client(&["get", &hello_id]).ok();
    assert_eq!(stdout.stdout, small);
    let by_path = server.client(&["get", "--path", "/hello.txt"]).ok();
    assert_eq!(by_path.stdout, small);
    let by_session = server
        .client(&["get", "--path", "hello.txt", "--session", "chat-1"])
        .ok();
    assert_eq!(by_session.stdout, small);
    let summary = server
        .client(&["get", &big_id, "-o", out.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(summary["size_bytes"], 1000);
    assert_eq!(str_field(&summary, "checksum"), sha256_hex(&changed));

    // A failed download leaves the target as it was, and no temporary file behind.
    let unknown = uuid::Uuid::new_v4().to_string();
    server
        .client(&["get", &unknown, "-o", out.to_str().unwrap()])
        .fails_with("not_found");
    assert_eq!(std::fs::read(&out).unwrap(), changed);
    let fresh = server.path("never.bin");
    server
        .client(&["get", &unknown, "-o", fresh.to_str().unwrap()])
        .fails_with("not_found");
    assert!(!fresh.exists());
    let leftovers: Vec<_> = std::fs::read_dir(server.data.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    server
        .client(&["get", "--path", "/no/such/file"])
        .fails_with("not_found");

    // url: a signed link anyone can fetch.
    let link = server.client(&["url", &hello_id]).ok().text();
    let link = link.trim();
    assert!(
        link.starts_with(&format!("{}/v1/download/", server.url)),
        "{link}"
    );
    assert_eq!(http_get(link).unwrap(), (200, small.clone()));
    let link_json = server
        .client(&["url", &big_id, "--expires-in", "60", "--json"])
        .ok()
        .json();
    assert!(link_json["expires_at"].is_string(), "{link_json}");
    assert_eq!(
        http_get(str_field(&link_json, "url")).unwrap(),
        (200, changed.clone())
    );

    // rm and restore.
    let rm = server.client(&["rm", &hello_id]).ok().text();
    assert!(rm.contains(&hello_id), "{rm}");
    server.client(&["get", &hello_id]).fails_with("not_found");
    server.client(&["rm", &hello_id]).fails_with("not_found");
    let restored = server.client(&["restore", &hello_id]).ok().text();
    assert_eq!(
        restored.trim(),
        format!("restored {hello_id} to /hello.txt")
    );
    assert_eq!(server.client(&["get", &hello_id]).ok().stdout, small);
    let rm_json = server.client(&["rm", &hello_id, "--json"]).ok().json();
    assert_eq!(rm_json["deleted"], true);
    let moved = server
        .client(&["restore", &hello_id, "--path", "/back/hello.txt", "--json"])
        .ok()
        .json();
    assert_eq!(str_field(&moved, "path"), "/back/hello.txt");
    assert_eq!(str_field(&moved, "id"), hello_id);

    // usage.
    let usage = server.client(&["usage", "--json"]).ok().json();
    assert_eq!(usage["file_count"], 4);
    assert_eq!(
        usage["used_bytes"],
        (2 * small.len() + 2 * changed.len()) as u64
    );
    assert_eq!(usage["limit_bytes"], 0);
    let usage_text = server.client(&["usage"]).ok().text();
    assert!(usage_text.contains("limit: unlimited"), "{usage_text}");
    assert!(usage_text.contains("files: 4"), "{usage_text}");

    // Authentication and reachability failures.
    server
        .client_as("not-a-token", &["ls"])
        .fails_with("unauthenticated");
    let no_token = server
        .client_as("", &["usage"])
        .fails_with("unauthenticated");
    assert!(
        no_token.stderr.contains("SATCHEL_TOKEN"),
        "{}",
        no_token.stderr
    );
    let closed = format!("http://127.0.0.1:{}", free_port());
    let env = [("SATCHEL_URL", closed.as_str()), ("SATCHEL_TOKEN", "x")];
    Run::from(
        command(&env, server.data.path())
            .arg("usage")
            .output()
            .unwrap(),
    )
    .fails_with("unreachable");

    // Maintenance on a consistent store.
    let gc = server.admin(&["gc", "--dry-run"]).ok().text();
    assert!(gc.contains("would remove"), "{gc}");
    let gc_json = server.admin(&["gc", "--dry-run", "--json"]).ok().json();
    assert_eq!(gc_json["dry_run"], true);
    let fsck = server.admin(&["fsck"]);
    assert_eq!(fsck.code, Some(0), "{}\n{}", fsck.text(), fsck.stderr);
    let fsck_json = server.admin(&["fsck", "--deep", "--json"]).ok().json();
    assert_eq!(fsck_json["problems"].as_array().unwrap().len(), 0);

    // Lose a blob: fsck reports it and exits 1.
    let blob_dir = server
        .data
        .path()
        .join("workspaces")
        .join(&workspace_id)
        .join(&hello_id);
    let blobs: Vec<_> = std::fs::read_dir(&blob_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", blob_dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!blobs.is_empty());
    for blob in blobs {
        std::fs::remove_file(blob).unwrap();
    }
    let broken = server.admin(&["fsck"]);
    assert_eq!(broken.code, Some(1), "{}\n{}", broken.text(), broken.stderr);
    assert!(broken.text().contains(&hello_id), "{}", broken.text());
    let broken_json = server.admin(&["fsck", "--json"]);
    assert_eq!(broken_json.code, Some(1));
    assert_eq!(broken_json.json()["problems"].as_array().unwrap().len(), 1);
}

#[test]
fn end_to_end_on_sqlite() {
    let server = start(None);
    scenario(&server);
    media_scenario(&server);
}

/// The same scenario on PostgreSQL, in a database of its own, when `DATABASE_URL` is set.
#[test]
fn end_to_end_on_postgres() {
    let Some(admin_url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    else {
        eprintln!("DATABASE_URL is not a postgres:// URL: skipping the PostgreSQL run");
        return;
    };
    let database = format!("satchel_cli_{}", uuid::Uuid::new_v4().simple());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = runtime.block_on(create_database(&admin_url, &database));
    {
        let server = start(Some(url));
        scenario(&server);
        media_scenario(&server);
    }
    runtime.block_on(drop_database(&admin_url, &database));
}

/// `satchel media …` on `data`'s configuration, with the execution folders under `exec`.
fn media(data: &Path, database_url: Option<&str>, exec: &Path, args: &[&str]) -> Run {
    let mut env = config_env(data, database_url);
    env.push(("EXEC_FILE_DIR", exec.to_str().expect("utf-8 temp dir")));
    let out = command(&env, data)
        .arg("media")
        .args(args)
        .output()
        .expect("run satchel media");
    Run::from(out)
}

/// `media store` against a server's database and storage: workspace inputs and block output
/// saved to the workspace, read back over HTTP (as bob, so alice's scenario is not disturbed).
fn media_scenario(server: &Server) {
    let exec = server.path("exec");
    let media = |args: &[&str]| {
        media(
            server.data.path(),
            server.database_url.as_deref(),
            &exec,
            args,
        )
    };
    let bob = server.admin(&["token", "--user", "bob"]).ok().text();
    let bob = bob.trim();
    let csv = b"a,b\n1,2\n";
    std::fs::write(server.path("table.csv"), csv).unwrap();
    let csv_path = server.path("table.csv");
    let put = server
        .client_as(bob, &["put", csv_path.to_str().unwrap(), "--json"])
        .ok()
        .json();
    let id = str_field(&put, "id").to_owned();
    let workspace = str_field(&put, "workspace_id").to_owned();
    let reference = format!("workspace://{id}");

    // A workspace file into the execution folder, under its name.
    let name = media(&[
        "store",
        &reference,
        "--exec-id",
        "run-1",
        "--user",
        "bob",
        "--workspace",
        &workspace,
        "--format",
        "for_local_processing",
    ])
    .ok()
    .text();
    assert_eq!(name, "table.csv\n");
    assert_eq!(std::fs::read(exec.join("run-1/table.csv")).unwrap(), csv);
    // By path, as a data URI.
    let uri = media(&[
        "store",
        "workspace:///table.csv",
        "--exec-id",
        "run-1",
        "--user",
        "bob",
        "--workspace",
        &workspace,
        "--format",
        "for_external_api",
    ])
    .ok()
    .text();
    assert_eq!(uri.trim(), "data:text/csv;base64,YSxiCjEsMgo=");
    // Block output in a chat session: saved to the workspace, readable over HTTP.
    let saved = media(&[
        "store",
        "data:text/plain;base64,aGVsbG8=",
        "--exec-id",
        "run-1",
        "--user",
        "bob",
        "--workspace",
        &workspace,
        "--session",
        "chat-7",
        "--format",
        "for_block_output",
    ])
    .ok()
    .text();
    let saved = saved.trim();
    let (new_id, mime) = saved
        .strip_prefix("workspace://")
        .and_then(|r| r.split_once('#'))
        .unwrap_or_else(|| panic!("not a workspace reference: {saved}"));
    assert_eq!(mime, "text/plain");
    let info = server.client_as(bob, &["get", new_id]).ok();
    assert_eq!(info.stdout, b"hello");
    let listed = server
        .client_as(bob, &["ls", "--session", "chat-7", "--json"])
        .ok()
        .text();
    assert!(listed.contains(new_id), "{listed}");
    // A workspace input given back as is.
    let same = media(&[
        "store",
        &reference,
        "--exec-id",
        "run-1",
        "--user",
        "bob",
        "--workspace",
        &workspace,
        "--session",
        "chat-7",
        "--format",
        "for_block_output",
    ])
    .ok()
    .text();
    assert_eq!(same.trim(), format!("{reference}#text/csv"));

    // Someone else's workspace is not found.
    media(&[
        "store",
        &reference,
        "--exec-id",
        "run-2",
        "--user",
        "alice",
        "--workspace",
        &workspace,
        "--format",
        "for_local_processing",
    ])
    .fails_with("not_found");
    assert!(!exec.join("run-2").join("table.csv").exists());

    media(&["clean", "--exec-id", "run-1"]).ok();
    assert!(!exec.join("run-1").exists());
}

#[test]
fn media_store_and_clean() {
    let data = tempfile::tempdir().unwrap();
    let exec = data.path().join("exec");
    let media = |args: &[&str]| media(data.path(), None, &exec, args);
    let hello = "data:text/plain;base64,aGVsbG8=";

    // for_local_processing: the bare name of a file under EXEC_FILE_DIR/e1/.
    let run = media(&[
        "store",
        hello,
        "--exec-id",
        "e1",
        "--user",
        "alice",
        "--format",
        "for_local_processing",
    ])
    .ok();
    let name = run.text();
    let name = name.strip_suffix('\n').expect("one line");
    assert!(name.ends_with(".txt") && !name.contains('/'), "{name:?}");
    assert_eq!(std::fs::read(exec.join("e1").join(name)).unwrap(), b"hello");
    // for_external_api: the data URI.
    let run = media(&[
        "store",
        hello,
        "--exec-id",
        "e1",
        "--user",
        "alice",
        "--format",
        "for_external_api",
    ])
    .ok();
    assert_eq!(run.text(), format!("{hello}\n"));
    // A path already in the folder.
    let run = media(&[
        "store",
        name,
        "--exec-id",
        "e1",
        "--user",
        "alice",
        "--format",
        "for_external_api",
    ])
    .ok();
    assert_eq!(run.text(), format!("{hello}\n"));
    // for_block_output of a graph run (no workspace): the data URI.
    let run = media(&[
        "store",
        hello,
        "--exec-id",
        "e1",
        "--user",
        "alice",
        "--session",
        "s1",
        "--format",
        "for_block_output",
    ])
    .ok();
    assert_eq!(run.text(), format!("{hello}\n"));

    // clean removes the folder; cleaning again is fine.
    let run = media(&["clean", "--exec-id", "e1"]).ok();
    assert!(run.stdout.is_empty());
    assert!(!exec.join("e1").exists());
    media(&["clean", "--exec-id", "e1"]).ok();

    // Refused: ids that escape the root, other schemes, bad input, missing local files,
    // workspace inputs without (or with a foreign) workspace.
    let escape = media(&[
        "store",
        hello,
        "--exec-id",
        "../x",
        "--user",
        "alice",
        "--format",
        "for_local_processing",
    ])
    .fails_with("invalid_input");
    assert!(escape.stdout.is_empty());
    media(&["clean", "--exec-id", "../x"]).fails_with("invalid_input");
    media(&["clean", "--exec-id", ".."]).fails_with("invalid_input");
    assert!(!data.path().join("x").exists());
    assert!(data.path().exists() && exec.parent() == Some(data.path()));
    for (input, code) in [
        ("file:///etc/passwd", "invalid_input"),
        ("data:text/plain;base64,@@@", "invalid_data_uri"),
        ("missing.png", "not_found"),
        ("../../etc/passwd", "invalid_path"),
        ("http://127.0.0.1:9/x", "url_not_allowed"),
        ("workspace:///a.txt", "invalid_input"),
    ] {
        media(&[
            "store",
            input,
            "--exec-id",
            "e2",
            "--user",
            "alice",
            "--format",
            "for_local_processing",
        ])
        .fails_with(code);
    }
    media(&[
        "store",
        "workspace:///a.txt",
        "--exec-id",
        "e2",
        "--user",
        "alice",
        "--workspace",
        "00000000-0000-4000-8000-000000000000",
        "--format",
        "for_local_processing",
    ])
    .fails_with("not_found");
    // Command-line mistakes: clap's usage error, nothing on stdout.
    for args in [
        &[
            "store",
            hello,
            "--exec-id",
            "e2",
            "--user",
            "alice",
            "--format",
            "nope",
        ][..],
        &[
            "store",
            hello,
            "--exec-id",
            "e2",
            "--format",
            "for_external_api",
        ],
        &[
            "store",
            hello,
            "--exec-id",
            "e2",
            "--user",
            "alice",
            "--workspace",
            "no",
            "--format",
            "for_external_api",
        ],
    ] {
        let run = media(args);
        assert_ne!(run.code, Some(0), "{args:?}");
        assert!(run.stdout.is_empty());
    }
}

async fn create_database(admin_url: &str, name: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to DATABASE_URL");
    // `name` is generated above from a UUID: nothing to inject.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let mut url = reqwest::Url::parse(admin_url).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn drop_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

#[test]
fn fsck_exits_2_when_it_cannot_run() {
    let data = tempfile::tempdir().unwrap();
    // The data dir is a file, so the catalog cannot be created.
    let not_a_dir = data.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let env = config_env(&not_a_dir, None);
    let run = Run::from(command(&env, data.path()).arg("fsck").output().unwrap());
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
}

#[test]
fn token_refuses_a_bad_ttl() {
    let data = tempfile::tempdir().unwrap();
    let env = config_env(data.path(), None);
    let run = Run::from(
        command(&env, data.path())
            .args(["token", "--user", "alice", "--ttl", "soon"])
            .output()
            .unwrap(),
    );
    assert_ne!(run.code, Some(0));
    assert!(run.stdout.is_empty());
}

/// What the fake server received: each request's lower-cased head and its body.
type Received = std::thread::JoinHandle<Vec<(String, Vec<u8>)>>;

/// A tiny HTTP server that answers requests, in order, with the given raw responses, then
/// stops; it returns what it received (lower-cased head, body). It shows what the client
/// sends and how the client copes with odd answers.
fn fake_server(responses: Vec<Vec<u8>>) -> (String, Received) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut responses = responses.into_iter();
        let mut requests = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        'connections: while responses.len() > 0 {
            let (mut stream, _) = listener.accept().unwrap();
            let mut received = Vec::new();
            loop {
                let head_end = loop {
                    if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let n = stream.read(&mut buf).unwrap();
                    if n == 0 {
                        continue 'connections;
                    }
                    received.extend_from_slice(&buf[..n]);
                };
                let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                while received.len() < head_end + length {
                    let n = stream.read(&mut buf).unwrap();
                    assert!(n > 0, "connection closed inside the request body");
                    received.extend_from_slice(&buf[..n]);
                }
                let body = received[head_end..head_end + length].to_vec();
                received.drain(..head_end + length);
                requests.push((head, body));
                let Some(response) = responses.next() else {
                    break 'connections;
                };
                stream.write_all(&response).unwrap();
                stream.flush().unwrap();
                if responses.len() == 0 {
                    break 'connections;
                }
            }
        }
        requests
    });
    (url, handle)
}

/// A raw HTTP/1.1 response with a JSON body.
fn json_response(status: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn put_streams_the_raw_file_with_its_length() {
    let data = tempfile::tempdir().unwrap();
    let content = pattern(700 * 1024);
    let file = data.path().join("report v1.pdf");
    std::fs::write(&file, &content).unwrap();
    let info = serde_json::json!({
        "id": "6b0c6d8e-0000-4000-8000-000000000001", "workspace_id": "w", "name": "report v1.pdf",
        "path": "/in/report v1.pdf", "mime_type": "application/pdf", "size_bytes": content.len(),
        "checksum": sha256_hex(&content), "metadata": {}, "created_at": "t", "updated_at": "t"
    });
    let (url, server) = fake_server(vec![json_response("201 Created", &info)]);
    let env = [("SATCHEL_URL", url.as_str()), ("SATCHEL_TOKEN", "tok")];
    let run = Run::from(
        command(&env, data.path())
            .args([
                "put",
                file.to_str().unwrap(),
                "--path",
                "/in/",
                "--checksum",
            ])
            .args(["--on-conflict", "rename", "--metadata", r#"{"a": [1]}"#])
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(
        run.text().trim(),
        "stored /in/report v1.pdf (716800 bytes, application/pdf) \
         id 6b0c6d8e-0000-4000-8000-000000000001"
    );
    let (head, body) = server.join().unwrap().remove(0);
    let request_line = head.lines().next().unwrap();
    assert!(request_line.starts_with("post /v1/files?filename=report+v1.pdf&path=%2fin%2f"));
    assert!(
        request_line.contains("on_conflict=rename"),
        "{request_line}"
    );
    assert!(
        request_line.contains("metadata=%7b%22a%22%3a%5b1%5d%7d"),
        "{request_line}"
    );
    assert!(
        head.contains(&format!("content-length: {}\r\n", content.len())),
        "{head}"
    );
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("authorization: bearer tok\r\n"), "{head}");
    assert!(head.contains(&format!("x-checksum-sha256: {}\r\n", sha256_hex(&content))));
    assert_eq!(body, content);
}

#[test]
fn a_broken_download_leaves_the_target_untouched() {
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("keep.bin");
    std::fs::write(&out, b"precious").unwrap();
    let full = pattern(1000);

    // The connection drops halfway through the announced length.
    let mut cut = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\netag: \"{}\"\r\n\r\n",
        sha256_hex(&full)
    )
    .into_bytes();
    cut.extend_from_slice(&full[..500]);
    // The content does not match the checksum the server announced.
    let mut wrong = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\netag: \"{}\"\r\n\r\n",
        sha256_hex(b"something else")
    )
    .into_bytes();
    wrong.extend_from_slice(&full);

    for (response, code) in [(cut, "transfer_failed"), (wrong, "checksum_mismatch")] {
        let (url, server) = fake_server(vec![response]);
        let env = [("SATCHEL_URL", url.as_str()), ("SATCHEL_TOKEN", "tok")];
        Run::from(
            command(&env, data.path())
                .args(["get", "some-id", "-o", out.to_str().unwrap()])
                .output()
                .unwrap(),
        )
        .fails_with(code);
        let (head, _) = server.join().unwrap().remove(0);
        assert!(head.starts_with("get /v1/files/some-id/content "), "{head}");
        assert_eq!(std::fs::read(&out).unwrap(), b"precious");
        let names: Vec<_> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("keep.bin")]);
    }
}

#[test]
fn a_non_json_error_still_reports_a_code() {
    let data = tempfile::tempdir().unwrap();
    let body = "<html>bad gateway</html>";
    let response = format!(
        "HTTP/1.1 502 Bad Gateway\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (url, server) = fake_server(vec![response.into_bytes()]);
    let env = [("SATCHEL_URL", url.as_str()), ("SATCHEL_TOKEN", "tok")];
    let run =
        Run::from(command(&env, data.path()).arg("usage").output().unwrap()).fails_with("http_502");
    assert!(run.stderr.contains("bad gateway"), "{}", run.stderr);
    server.join().unwrap();
}

#[test]
fn ls_follows_the_cursor_across_pages() {
    let data = tempfile::tempdir().unwrap();
    let file = |n: u32| {
        serde_json::json!({
            "id": format!("id-{n}"), "path": format!("/f{n}"), "size_bytes": n,
            "mime_type": "text/plain"
        })
    };
    let page = |range: std::ops::Range<u32>, next: Option<&str>| {
        serde_json::json!({
            "files": range.map(file).collect::<Vec<_>>(),
            "has_more": next.is_some(),
            "next_cursor": next,
        })
    };
    // Without --limit: every page, 1000 at a time.
    let (url, server) = fake_server(vec![
        json_response("200 OK", &page(0..1000, Some("c1"))),
        json_response("200 OK", &page(1000..1003, None)),
    ]);
    let env = [("SATCHEL_URL", url.as_str()), ("SATCHEL_TOKEN", "tok")];
    let all = Run::from(
        command(&env, data.path())
            .args(["ls", "/docs", "--json"])
            .output()
            .unwrap(),
    )
    .ok()
    .json();
    assert_eq!(all["files"].as_array().unwrap().len(), 1003);
    assert_eq!(all["has_more"], false);
    let requests = server.join().unwrap();
    assert!(requests[0]
        .0
        .starts_with("get /v1/files?limit=1000&path=%2fdocs "));
    assert!(requests[1]
        .0
        .starts_with("get /v1/files?limit=1000&path=%2fdocs&cursor=c1 "));

    // With --limit 1200: the second page asks only for what is missing.
    let (url, server) = fake_server(vec![
        json_response("200 OK", &page(0..1000, Some("c1"))),
        json_response("200 OK", &page(1000..1200, Some("c2"))),
    ]);
    let env = [("SATCHEL_URL", url.as_str()), ("SATCHEL_TOKEN", "tok")];
    let some = Run::from(
        command(&env, data.path())
            .args(["ls", "--limit", "1200"])
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(some.text().lines().count(), 1201);
    assert!(some.stderr.contains("raise --limit"), "{}", some.stderr);
    let requests = server.join().unwrap();
    assert!(requests[1]
        .0
        .starts_with("get /v1/files?limit=200&cursor=c1 "));
}
