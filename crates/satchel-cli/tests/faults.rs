//! Proof under faults (issue 6), against the real binary: `satchel serve` killed with SIGKILL
//! mid-upload, PostgreSQL restarted under a stream of writes, storage failing and recovering,
//! and two nodes on one PostgreSQL and one storage dir under 200 concurrent writers.
//!
//! Every test prints its figures (acknowledged / verified / lost, faults injected). PostgreSQL
//! comes from `DATABASE_URL` (a fresh database per test) or, for the restart test, a private
//! cluster started here; without them the tests fail unless `SATCHEL_SKIP_EXTERNAL=1`.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_satchel");

fn skip_external() -> bool {
    std::env::var("SATCHEL_SKIP_EXTERNAL").is_ok_and(|v| v == "1")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn content(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A fresh database on the server of `DATABASE_URL`.
async fn fresh_database() -> Option<String> {
    let Ok(base) = std::env::var("DATABASE_URL") else {
        assert!(
            skip_external(),
            "DATABASE_URL is not set (scripts/services.sh start)"
        );
        return None;
    };
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&base).await.expect("connect");
    let name = format!("f_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let server = base
        .split('?')
        .next()
        .unwrap_or(&base)
        .rsplit_once('/')
        .expect("db")
        .0
        .to_owned();
    Some(format!("{server}/{name}"))
}

/// The shared configuration of the nodes of one test.
struct Cluster {
    data: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Cluster {
    fn new(database_url: &str, extra: &[(&str, &str)]) -> Cluster {
        let data = tempfile::tempdir().expect("tempdir");
        let mut env = vec![
            ("APP_DATA_DIR".to_owned(), data.path().display().to_string()),
            ("DATABASE_URL".to_owned(), database_url.to_owned()),
            ("CLAMAV_SERVICE_ENABLED".to_owned(), "false".to_owned()),
            ("GC_INTERVAL_S".to_owned(), "0".to_owned()),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Cluster { data, env }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .current_dir(self.data.path())
            .stdin(Stdio::null());
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn storage(&self) -> PathBuf {
        self.data.path().join("workspaces")
    }

    fn admin(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.command().args(args).output().expect("run satchel");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn token(&self, user: &str) -> String {
        let (code, out) = self.admin(&["token", "--user", user]);
        assert_eq!(code, Some(0));
        out.trim().to_owned()
    }

    fn start_node(&self, name: &str) -> Node {
        let port = free_port();
        let log = std::fs::File::create(self.data.path().join(format!("{name}.log"))).expect("log");
        let child = self
            .command()
            .env("BIND_ADDRESS", format!("127.0.0.1:{port}"))
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn serve");
        let node = Node {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "node {name} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    /// fsck's JSON report.
    fn fsck(&self) -> (Option<i32>, Value) {
        let (code, out) = self.admin(&["fsck", "--json"]);
        (code, serde_json::from_str(&out).unwrap_or(Value::Null))
    }

    /// Makes every blob and staged file look two hours old, as if the grace period had passed.
    fn age_storage(&self) {
        let old = SystemTime::now() - Duration::from_secs(7200);
        let mut stack = vec![self.storage()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(f) = std::fs::File::options().write(true).open(&p) {
                    let _ = f.set_modified(old);
                }
            }
        }
    }

    fn staged_count(&self) -> usize {
        std::fs::read_dir(self.storage().join(".staging"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn problems(report: &Value, kind: &str) -> usize {
    report["problems"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["kind"] == kind).count())
        .unwrap_or(0)
}

struct Node {
    child: Child,
    url: String,
}

impl Node {
    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[derive(Debug)]
enum Outcome {
    Stored { id: String, checksum: String },
    Refused(u16, String),
    Broken(String),
}

async fn upload(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    body: Vec<u8>,
) -> Outcome {
    let response = client
        .post(format!("{url}/v1/files?{query}"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await;
    match response {
        Err(e) => Outcome::Broken(e.to_string()),
        Ok(r) => {
            let status = r.status().as_u16();
            match r.json::<Value>().await {
                Ok(v) if status == 200 || status == 201 => Outcome::Stored {
                    id: v["id"].as_str().unwrap_or_default().to_owned(),
                    checksum: v["checksum"].as_str().unwrap_or_default().to_owned(),
                },
                Ok(v) => Outcome::Refused(
                    status,
                    v["error"]["code"].as_str().unwrap_or("?").to_owned(),
                ),
                Err(e) => Outcome::Broken(format!("{status}: {e}")),
            }
        }
    }
}

async fn download(client: &reqwest::Client, url: &str, token: &str, id: &str) -> Option<Vec<u8>> {
    let r = client
        .get(format!("{url}/v1/files/{id}/content"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    Some(r.bytes().await.ok()?.to_vec())
}

/// 64 concurrent uploads of mixed sizes; `kill -9` mid-way; restart; every acknowledged upload
/// is intact, no record lacks its blob, and gc clears what fsck reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_upload_loses_nothing_acknowledged() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let cluster = Cluster::new(&db, &[]);
    let mut node = cluster.start_node("crash-1");
    let token = cluster.token("crash");
    let client = reqwest::Client::new();
    let sizes = [1024, 64 * 1024, 1 << 20, 8 << 20, 24 << 20];
    let acked_so_far = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (client, url, token) = (client.clone(), node.url.clone(), token.clone());
        let counter = acked_so_far.clone();
        let body = content(i, sizes[i % sizes.len()]);
        let expected = sha256_hex(&body);
        tasks.push(tokio::spawn(async move {
            let outcome = upload(&client, &url, &token, &format!("filename=f{i}.bin"), body).await;
            if matches!(outcome, Outcome::Stored { .. }) {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            (expected, outcome)
        }));
    }
    // Kill the server once a few uploads are acknowledged: most are still in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_so_far.load(std::sync::atomic::Ordering::SeqCst) < 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    node.kill9();
    let mut acked = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await.expect("task") {
            (expected, Outcome::Stored { id, checksum }) => {
                assert_eq!(checksum, expected, "acknowledged checksum is the content's");
                acked.push((id, expected));
            }
            _ => failed += 1,
        }
    }
    assert!(
        failed > 0,
        "the kill landed mid-way (some uploads were in flight)"
    );
    let node2 = cluster.start_node("crash-2");
    let mut verified = 0;
    for (id, expected) in &acked {
        let bytes = download(&client, &node2.url, &token, id)
            .await
            .expect("acknowledged file readable");
        assert_eq!(&sha256_hex(&bytes), expected);
        verified += 1;
    }
    let (_, before) = cluster.fsck();
    let missing = problems(&before, "missing_blob") + problems(&before, "size_mismatch");
    let orphans = problems(&before, "orphan_blob");
    let staged_before = cluster.staged_count();
    println!(
        "crash: 64 uploads, SIGKILL after 8 acks: acknowledged {}, verified {verified}, lost {}, \
         failed in flight {failed}; after restart fsck: records without blob {missing}, orphan \
         blobs {orphans}, staged files {staged_before}",
        acked.len(),
        acked.len() - verified
    );
    assert_eq!(missing, 0, "no record without its blob: {before}");
    assert_eq!(
        before["problems"].as_array().map(Vec::len),
        Some(orphans),
        "fsck finds only orphans"
    );
    cluster.age_storage();
    let (code, _) = cluster.admin(&["gc"]);
    assert_eq!(code, Some(0));
    let (code, after) = cluster.fsck();
    assert_eq!(code, Some(0), "fsck clean after gc: {after}");
    assert_eq!(cluster.staged_count(), 0, "no staged file survives gc");
}

/// Two nodes on one PostgreSQL and one storage dir; 200 concurrent writers on 20 overlapping
/// paths mixing create, overwrite and delete. Afterwards fsck is clean and each path has at
/// most one live file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_two_hundred_writers_agree() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let cluster = Cluster::new(&db, &[]);
    let a = cluster.start_node("node-a");
    let b = cluster.start_node("node-b");
    let token = cluster.token("shared");
    let client = reqwest::Client::new();
    let urls = [a.url.clone(), b.url.clone()];
    let mut tasks = Vec::new();
    for w in 0..200usize {
        let (client, token, url) = (client.clone(), token.clone(), urls[w % 2].clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = HashMap::<String, usize>::new();
            for round in 0..5usize {
                let path = format!("/p{}.bin", (w + round) % 20);
                let body = content(w * 10 + round, 1024 + (w * 37 + round) % 4096);
                let mode = (w + round) % 3;
                let query = match mode {
                    0 => format!("filename=x&path={path}"),
                    _ => format!("filename=x&path={path}&overwrite=true"),
                };
                let outcome = upload(&client, &url, &token, &query, body).await;
                let key = match &outcome {
                    Outcome::Stored { id, .. } if mode == 2 => {
                        // Delete what we just wrote (it may already be overwritten: same id).
                        let r = client
                            .delete(format!("{url}/v1/files/{id}"))
                            .bearer_auth(&token)
                            .send()
                            .await;
                        match r.map(|r| r.status().as_u16()) {
                            Ok(204) => "deleted".into(),
                            Ok(404) => "delete_raced".into(),
                            other => format!("delete_failed {other:?}"),
                        }
                    }
                    Outcome::Stored { .. } => "stored".into(),
                    Outcome::Refused(409, _) => "path_exists".into(),
                    Outcome::Refused(s, c) => format!("refused {s} {c}"),
                    Outcome::Broken(e) => format!("broken {e}"),
                };
                *tally.entry(key).or_default() += 1;
            }
            tally
        }));
    }
    let mut totals = HashMap::<String, usize>::new();
    for t in tasks {
        for (k, v) in t.await.expect("writer") {
            *totals.entry(k).or_default() += v;
        }
    }
    println!("two nodes, 200 writers × 5 ops: {totals:?}");
    for k in totals.keys() {
        assert!(
            ["stored", "deleted", "delete_raced", "path_exists"].contains(&k.as_str()),
            "unexpected outcome {k}"
        );
    }
    // At most one live file per path, and its bytes match its checksum.
    let list: Value = client
        .get(format!(
            "{}/v1/files?limit=1000&include_all_sessions=true",
            a.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let files = list["files"].as_array().expect("files");
    let mut paths = std::collections::HashSet::new();
    for f in files {
        assert!(
            paths.insert(f["path"].as_str().unwrap_or_default().to_owned()),
            "two live files at {}",
            f["path"]
        );
        let bytes = download(
            &client,
            &b.url,
            &token,
            f["id"].as_str().unwrap_or_default(),
        )
        .await
        .expect("readable");
        assert_eq!(
            sha256_hex(&bytes),
            f["checksum"].as_str().unwrap_or_default()
        );
    }
    drop((a, b));
    let (code, report) = cluster.fsck();
    println!("two nodes: {} live paths; fsck: {report}", paths.len());
    assert_eq!(code, Some(0), "catalog and blobs agree exactly: {report}");
}

/// Storage fails under a stream of writes (the staging area replaced by a file, which fails
/// every write even for root), then recovers: every write either succeeded fully or got 503
/// `storage_unavailable`, nothing is half-kept, and no restart is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_outage_fails_closed_and_recovers() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let cluster = Cluster::new(&db, &[]);
    let node = cluster.start_node("storage");
    let token = cluster.token("s");
    let client = reqwest::Client::new();
    let write = |i: usize| {
        let (client, url, token) = (client.clone(), node.url.clone(), token.clone());
        async move {
            upload(
                &client,
                &url,
                &token,
                &format!("filename=s{i}.bin"),
                content(i, 200_000),
            )
            .await
        }
    };
    assert!(matches!(write(0).await, Outcome::Stored { .. }));
    let staging = cluster.storage().join(".staging");
    std::fs::remove_dir_all(&staging).expect("remove staging");
    std::fs::write(&staging, b"not a directory").expect("plant file");
    let mut refused = 0;
    for i in 1..=10 {
        match write(i).await {
            Outcome::Refused(503, code) => {
                assert_eq!(code, "storage_unavailable");
                refused += 1;
            }
            other => panic!("write during the outage: {other:?}"),
        }
    }
    std::fs::remove_file(&staging).expect("remove plant");
    std::fs::create_dir(&staging).expect("restore staging");
    let mut stored_after = 0;
    for i in 11..=20 {
        assert!(
            matches!(write(i).await, Outcome::Stored { .. }),
            "recovers without a restart"
        );
        stored_after += 1;
    }
    let (code, report) = cluster.fsck();
    println!("storage outage: refused {refused} with 503, stored {stored_after} after recovery; fsck {report}");
    assert_eq!(code, Some(0));
    let count: Value = client
        .get(format!("{}/v1/files/count", node.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("count")
        .json()
        .await
        .expect("json");
    assert_eq!(count["count"], 11);
}

/// A private PostgreSQL cluster this test can restart.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

const PGBIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(cmd: &str, args: &[&str]) -> std::process::Output {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
    let mut c = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &format!("{PGBIN}/{cmd}")]);
        c
    } else {
        Command::new(format!("{PGBIN}/{cmd}"))
    };
    c.args(args).output().expect("run postgres tool")
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().expect("tempdir");
        let _ = Command::new("chown")
            .args(["postgres:postgres", &dir.path().display().to_string()])
            .status();
        let data = dir.path().display().to_string();
        let out = as_postgres(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = PrivatePostgres {
            dir,
            port: free_port(),
        };
        pg.ctl("start");
        pg
    }

    fn ctl(&self, action: &str) {
        let data = self.dir.path().display().to_string();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {data} -c fsync=off",
            self.port
        );
        let log = format!("{data}/server.log");
        let out = as_postgres(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "30", "-m", "fast", "-o", &opts, action,
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.path().display().to_string();
        let _ = as_postgres("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}

/// PostgreSQL restarted under a stream of writes: every write either succeeds fully or gets 503
/// `database_unavailable`; acknowledged files stay readable; the service recovers on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_under_writes() {
    if !Path::new(PGBIN).join("initdb").exists() {
        assert!(
            skip_external(),
            "PostgreSQL 15 is not installed (scripts/services.sh installs it)"
        );
        return;
    }
    let pg = Arc::new(PrivatePostgres::start());
    let cluster = Cluster::new(&pg.url(), &[]);
    let node = cluster.start_node("pg-restart");
    let token = cluster.token("p");
    let client = reqwest::Client::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (client, url, token, stop) = (
            client.clone(),
            node.url.clone(),
            token.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let body = content(w * 10_000 + i, 50_000);
                let expected = sha256_hex(&body);
                let o = upload(
                    &client,
                    &url,
                    &token,
                    &format!("filename=w{w}-{i}.bin"),
                    body,
                )
                .await;
                results.push((expected, o));
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            results
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarter = pg.clone();
    tokio::task::spawn_blocking(move || restarter.ctl("restart"))
        .await
        .expect("restart");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut ok, mut unavailable) = (0, 0);
    let mut acked = Vec::new();
    for w in writers {
        for (expected, o) in w.await.expect("writer") {
            match o {
                Outcome::Stored { id, checksum } => {
                    assert_eq!(checksum, expected);
                    acked.push((id, expected));
                    ok += 1;
                }
                Outcome::Refused(503, code) => {
                    assert_eq!(code, "database_unavailable");
                    unavailable += 1;
                }
                other => panic!("unexpected outcome during the restart: {other:?}"),
            }
        }
    }
    // Recovered without a restart of Satchel.
    assert!(matches!(
        upload(
            &client,
            &node.url,
            &token,
            "filename=after.bin",
            b"after".to_vec()
        )
        .await,
        Outcome::Stored { .. }
    ));
    for (id, expected) in &acked {
        let bytes = download(&client, &node.url, &token, id)
            .await
            .expect("acknowledged file readable");
        assert_eq!(&sha256_hex(&bytes), expected);
    }
    drop(node);
    let (_, report) = cluster.fsck();
    println!(
        "postgres restart: {ok} stored and verified, {unavailable} refused with 503; fsck {report}"
    );
    assert_eq!(problems(&report, "missing_blob"), 0);
    cluster.age_storage();
    cluster.admin(&["gc"]);
    assert_eq!(cluster.fsck().0, Some(0));
}
