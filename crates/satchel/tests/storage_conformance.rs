//! The storage conformance suite: one list of behaviours every `BlobStore` must have, run against
//! the local disk, GCS (fake-gcs-server) and S3 (moto) — the model is OpenDAL's behaviour tests
//! and object_store's `integration.rs`. Every test gets a fresh bucket.
//!
//! Emulators come from `scripts/services.sh` (`source $SVC_DIR/env`); without them the GCS and
//! S3 variants fail unless `SATCHEL_SKIP_EXTERNAL=1`. The outage tests start private emulator
//! instances on free ports (FAKE_GCS_SERVER_BIN, MOTO_SERVER_BIN from the same env file) so
//! the shared ones keep running. Signing is checked without any network: against the
//! published AWS SigV4 and Google V4 test vectors.
//!
//! Memory is measured with the process's peak RSS (VmHWM, reset through /proc/self/clear_refs);
//! those tests take an exclusive lock so no other test of this binary runs meanwhile.

mod common;

use bytes::Bytes;
use common::{storage_available, with_storage, Backend, Storage, TestEnv};
use futures::StreamExt;
use satchel::scanner::NoScan;
use satchel::storage::{BlobStore, ByteRange, StorageError, StoreTuning, MAX_PRESIGN_EXPIRY};
use satchel::{Config, ErrorCode, Satchel, WriteOptions};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::RwLock;
use uuid::Uuid;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Tests hold it shared; the memory-measuring ones hold it exclusively.
static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

// --- fixtures ------------------------------------------------------------------------------------

struct Fixture {
    store: Arc<dyn BlobStore>,
    config: Config,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn bucket(&self) -> Option<&str> {
        self.config
            .media_gcs_bucket_name
            .as_deref()
            .or(self.config.media_s3_bucket_name.as_deref())
    }

    fn new_path(&self, name: &str) -> String {
        self.store
            .storage_path(Uuid::new_v4(), Uuid::new_v4(), name)
    }

    /// A Satchel (SQLite catalog, no scanner) on this store.
    async fn satchel(&self) -> Satchel {
        let catalog = satchel::catalog::connect(&self.config.database_url)
            .await
            .expect("catalog");
        Satchel::from_parts(
            self.config.clone(),
            catalog,
            self.store.clone(),
            Arc::new(NoScan),
        )
    }
}

fn base_config(dir: &std::path::Path) -> Config {
    let env = HashMap::from([("APP_DATA_DIR".to_owned(), dir.display().to_string())]);
    Config::from_sources(None, &env).expect("config")
}

async fn fixture(kind: Storage) -> Option<Fixture> {
    fixture_with(kind, &StoreTuning::default()).await
}

async fn fixture_with(kind: Storage, tuning: &StoreTuning) -> Option<Fixture> {
    if !storage_available(kind) {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::configure_storage(base_config(dir.path()), kind).await;
    let store = satchel::storage::open_with(&config, tuning)
        .await
        .expect("open store");
    Some(Fixture {
        store,
        config,
        _dir: dir,
    })
}

/// Deterministic, incompressible bytes: `len` of them from `seed`, in `chunk`-sized pieces.
fn chunks(seed: u64, len: usize, chunk: usize) -> impl Iterator<Item = Bytes> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(chunk);
        left -= n;
        let mut buf = Vec::with_capacity(n + 8);
        while buf.len() < n {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            buf.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        buf.truncate(n);
        Some(Bytes::from(buf))
    })
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    chunks(seed, len, 64 * KIB)
        .flat_map(|c| c.to_vec())
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn put(store: &dyn BlobStore, path: &str, data: &[u8], chunk: usize) {
    let mut writer = store.create(path).await.expect("create");
    for piece in data.chunks(chunk.max(1)) {
        writer
            .write(Bytes::copy_from_slice(piece))
            .await
            .expect("write");
    }
    writer.finish().await.expect("finish");
}

async fn get(store: &dyn BlobStore, path: &str, range: Option<ByteRange>) -> Vec<u8> {
    let mut stream = store.open(path, range).await.expect("open");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("read"));
    }
    out
}

/// Polls `check` for up to `secs` seconds (cleanup done by spawned tasks).
async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 20 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check().await
}

/// Incomplete S3 multipart uploads in a bucket (ListMultipartUploads; moto checks no signature).
async fn s3_pending_uploads(endpoint: &str, bucket: &str) -> usize {
    let body = reqwest::get(format!("{endpoint}/{bucket}?uploads"))
        .await
        .expect("list multipart uploads")
        .text()
        .await
        .expect("body");
    body.matches("<Upload>").count()
}

/// Puts an object straight into the emulator's bucket (not through the store).
async fn put_raw(kind: Storage, bucket: &str, key: &str, body: &'static [u8]) {
    let endpoint = common::emulator_endpoint(kind);
    let client = reqwest::Client::new();
    let response = match kind {
        Storage::Gcs => {
            client
                .post(format!(
                    "{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
                    utf8_percent_encode(key)
                ))
                .body(body)
                .send()
                .await
        }
        Storage::S3 => {
            client
                .put(format!("{endpoint}/{bucket}/{key}"))
                .body(body)
                .send()
                .await
        }
        Storage::Local => return,
    }
    .expect("raw put");
    assert!(response.status().is_success(), "{}", response.status());
}

fn utf8_percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs each body (`async fn(Storage)`) on every backend.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn local() {
                    super::$name(Storage::Local).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn gcs() {
                    super::$name(Storage::Gcs).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn s3() {
                    super::$name(Storage::S3).await
                }
            }
        )*
    };
}

on_every_store!(
    write_read_range_stat_list_delete,
    storage_paths_are_parsed_strictly,
    streamed_200_mib_in_bounded_memory,
    concurrent_writes,
    dropped_write_leaves_nothing,
    service_stopped_mid_stream,
    presigned_urls_round_trip,
    gc_and_fsck,
);

// --- the behaviours ------------------------------------------------------------------------------

async fn write_read_range_stat_list_delete(kind: Storage) {
    let _shared = EXCLUSIVE.read().await;
    let Some(fx) = fixture(kind).await else {
        return;
    };
    let store = fx.store.as_ref();
    let len = 3 * MIB + 17;
    let bytes = data(1, len);
    let path = fx.new_path("blob.bin");

    // Nothing is visible at the key before `finish`.
    let mut writer = store.create(&path).await.expect("create");
    for piece in bytes.chunks(100_000) {
        writer
            .write(Bytes::copy_from_slice(piece))
            .await
            .expect("write");
    }
    assert_eq!(store.size(&path).await.expect("size"), None);
    assert_eq!(store.uploads_in_flight(), 1);
    assert!(store.list().await.expect("list").is_empty());
    writer.finish().await.expect("finish");
    assert_eq!(store.uploads_in_flight(), 0);

    assert_eq!(store.size(&path).await.expect("size"), Some(len as u64));
    assert_eq!(get(store, &path, None).await, bytes);
    for (start, end) in [
        (0, 0),
        (1, 99_999),
        (MIB as u64, 2 * MIB as u64 + 5),
        (len as u64 - 1, len as u64 - 1),
        (0, len as u64 - 1),
    ] {
        let got = get(store, &path, Some(ByteRange { start, end })).await;
        assert_eq!(
            got,
            bytes[start as usize..=end as usize],
            "range {start}-{end}"
        );
    }

    let listed = store.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].storage_path, path);
    assert_eq!(listed[0].size, len as u64);
    let age = SystemTime::now()
        .duration_since(listed[0].modified)
        .unwrap_or_else(|e| e.duration());
    assert!(
        age < Duration::from_secs(300),
        "modified time is {age:?} off"
    );

    // An empty blob is a blob.
    let empty = fx.new_path("empty");
    store
        .create(&empty)
        .await
        .expect("create")
        .finish()
        .await
        .expect("finish");
    assert_eq!(store.size(&empty).await.expect("size"), Some(0));
    assert!(get(store, &empty, None).await.is_empty());
    assert_eq!(store.list().await.expect("list").len(), 2);

    // Deletes are idempotent; a deleted blob is gone.
    store.delete(&path).await.expect("delete");
    assert_eq!(store.size(&path).await.expect("size"), None);
    assert!(matches!(
        store.open(&path, None).await.err(),
        Some(StorageError::NotFound)
    ));
    store.delete(&path).await.expect("delete again");
    store
        .delete(&fx.new_path("never-written"))
        .await
        .expect("delete a missing blob");
    store.delete(&empty).await.expect("delete");
    assert!(store.list().await.expect("list").is_empty());
    store.ping().await.expect("ping");
}

async fn storage_paths_are_parsed_strictly(kind: Storage) {
    let _shared = EXCLUSIVE.read().await;
    let Some(fx) = fixture(kind).await else {
        return;
    };
    let store = fx.store.as_ref();
    let (ws, file) = (Uuid::new_v4(), Uuid::new_v4());
    let valid = store.storage_path(ws, file, "x.bin");
    put(store, &valid, b"mine", 4).await;
    let mut bad = vec![
        valid.replace(&file.to_string(), ".."),
        valid.replace(&ws.to_string(), &ws.to_string().to_uppercase()),
        valid.replace(&ws.to_string(), &ws.simple().to_string()),
        format!("{valid}/more"),
        valid.replace("x.bin", "x\u{0}.bin"),
        valid.replace("x.bin", "a\\..\\b"),
        format!(
            "ftp://{}",
            valid.split_once("://").map(|p| p.1).unwrap_or_default()
        ),
    ];
    if let Some(bucket) = fx.bucket() {
        bad.push(valid.replace(bucket, "another-bucket"));
        bad.push(valid.replace("/workspaces/", "/other/"));
        bad.push(valid.replace("/workspaces/", "/workspaces/../"));
    } else {
        bad.push(format!("gcs://b/workspaces/{ws}/{file}/x.bin"));
    }
    for path in &bad {
        let invalid = |r: Result<(), StorageError>| matches!(r, Err(StorageError::InvalidPath(_)));
        assert!(invalid(store.create(path).await.map(drop)), "create {path}");
        assert!(
            invalid(store.open(path, None).await.map(drop)),
            "open {path}"
        );
        assert!(invalid(store.size(path).await.map(drop)), "size {path}");
        assert!(invalid(store.delete(path).await), "delete {path}");
        if kind != Storage::Local {
            let presigned = store
                .presign_read(path, Duration::from_secs(60), "x", "text/plain")
                .await;
            assert!(invalid(presigned.map(drop)), "presign {path}");
        }
    }
    // Objects this store did not write are invisible to `list` (and so to gc).
    match (kind, fx.bucket()) {
        (Storage::Local, _) => {
            let root = &fx.config.workspace_storage_dir;
            std::fs::write(root.join("stray.txt"), b"x").expect("write");
            std::fs::create_dir_all(root.join("not-a-uuid/also-not")).expect("mkdir");
            std::fs::write(root.join("not-a-uuid/also-not/f"), b"x").expect("write");
        }
        (_, Some(bucket)) => {
            put_raw(kind, bucket, "other/file.txt", b"x").await;
            put_raw(kind, bucket, "workspaces/not-a-uuid/x/y", b"x").await;
            put_raw(
                kind,
                bucket,
                &format!("workspaces/{ws}/{file}/x.bin/deeper"),
                b"x",
            )
            .await;
        }
        _ => unreachable!(),
    }
    let listed: Vec<String> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.storage_path)
        .collect();
    assert_eq!(listed, vec![valid.clone()]);
    assert_eq!(get(store, &valid, None).await, b"mine");
}

/// Peak RSS (VmHWM) reset to the current RSS; returns that baseline in bytes.
fn reset_peak_rss() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    proc_status_bytes("VmRSS")
}

fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"))
}

async fn streamed_200_mib_in_bounded_memory(kind: Storage) {
    const LEN: usize = 200 * MIB;
    const LIMIT: u64 = 64 * MIB as u64;
    let Some(fx) = fixture(kind).await else {
        return;
    };
    let _exclusive = EXCLUSIVE.write().await;
    let store = fx.store.as_ref();
    let path = fx.new_path("big.bin");

    let baseline = reset_peak_rss();
    let started = std::time::Instant::now();
    let mut hasher = Sha256::new();
    let mut writer = store.create(&path).await.expect("create");
    for chunk in chunks(7, LEN, 256 * KIB) {
        hasher.update(&chunk);
        writer.write(chunk).await.expect("write");
    }
    writer.finish().await.expect("finish");
    let written = hex::encode(hasher.finalize());
    let write_growth = proc_status_bytes("VmHWM").saturating_sub(baseline);
    let write_time = started.elapsed();

    let baseline = reset_peak_rss();
    let started = std::time::Instant::now();
    let mut stream = store.open(&path, None).await.expect("open");
    let mut hasher = Sha256::new();
    let mut read = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("read");
        read += chunk.len();
        hasher.update(&chunk);
    }
    let read_growth = proc_status_bytes("VmHWM").saturating_sub(baseline);
    let read_time = started.elapsed();
    eprintln!(
        "{kind:?}: 200 MiB write {:.1} MiB/s, peak RSS +{:.1} MiB; read {:.1} MiB/s, peak RSS +{:.1} MiB",
        200.0 / write_time.as_secs_f64(),
        write_growth as f64 / MIB as f64,
        200.0 / read_time.as_secs_f64(),
        read_growth as f64 / MIB as f64,
    );
    assert_eq!(read, LEN);
    assert_eq!(hex::encode(hasher.finalize()), written);
    assert!(
        write_growth < LIMIT,
        "writing 200 MiB grew the peak RSS by {write_growth} bytes"
    );
    assert!(
        read_growth < LIMIT,
        "reading 200 MiB grew the peak RSS by {read_growth} bytes"
    );
    store.delete(&path).await.expect("delete");
}

async fn concurrent_writes(kind: Storage) {
    let _shared = EXCLUSIVE.read().await;
    let Some(fx) = fixture(kind).await else {
        return;
    };
    // Sizes around S3's 8 MiB part, so some uploads are multipart and some are single PUTs.
    let sizes = [
        0,
        1,
        KIB,
        64 * KIB,
        MIB,
        5 * MIB,
        8 * MIB,
        8 * MIB + 1,
        12 * MIB,
        17 * MIB,
    ];
    let tasks: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let store = fx.store.clone();
            let path = fx.new_path(&format!("c{i}.bin"));
            tokio::spawn(async move {
                let bytes = data(100 + i as u64, size);
                put(store.as_ref(), &path, &bytes, 256 * KIB).await;
                (path, sha256_hex(&bytes), size)
            })
        })
        .collect();
    let mut written = Vec::new();
    for task in tasks {
        written.push(task.await.expect("task"));
    }
    assert_eq!(fx.store.uploads_in_flight(), 0);
    for (path, checksum, size) in &written {
        let got = get(fx.store.as_ref(), path, None).await;
        assert_eq!(got.len(), *size);
        assert_eq!(&sha256_hex(&got), checksum, "{path}");
    }
    assert_eq!(fx.store.list().await.expect("list").len(), sizes.len());
}

async fn dropped_write_leaves_nothing(kind: Storage) {
    let _shared = EXCLUSIVE.read().await;
    let Some(fx) = fixture(kind).await else {
        return;
    };
    let store = fx.store.clone();
    // Dropped before any byte.
    drop(store.create(&fx.new_path("nothing")).await.expect("create"));
    // Dropped mid-stream, after 20 MiB: S3 has uploaded parts of a multipart upload, GCS chunks
    // of a resumable upload, the local store a staged file.
    let path = fx.new_path("dropped.bin");
    let mut writer = store.create(&path).await.expect("create");
    for chunk in chunks(3, 20 * MIB, 256 * KIB) {
        writer.write(chunk).await.expect("write");
    }
    let far_future = SystemTime::now() + Duration::from_secs(86_400);
    match (kind, fx.bucket()) {
        (Storage::Local, _) => assert_eq!(
            store
                .sweep_staging(far_future, true)
                .await
                .expect("staging")
                .len(),
            1,
            "the upload is staged"
        ),
        (Storage::S3, Some(bucket)) => {
            let endpoint = common::emulator_endpoint(kind);
            assert!(
                eventually(10, || async {
                    s3_pending_uploads(&endpoint, bucket).await > 0
                })
                .await,
                "the upload is a multipart upload in progress"
            );
        }
        _ => {}
    }
    assert_eq!(store.uploads_in_flight(), 1);
    drop(writer);
    assert_eq!(store.uploads_in_flight(), 0);

    // The drop guard cleans up in the background: nothing at the key, nothing listed, no
    // staged file, no multipart upload left open.
    let bucket = fx.bucket().map(str::to_owned);
    let clean = eventually(10, || {
        let store = store.clone();
        let path = path.clone();
        let bucket = bucket.clone();
        async move {
            let staged = store
                .sweep_staging(far_future, true)
                .await
                .expect("staging");
            let pending = match (kind, &bucket) {
                (Storage::S3, Some(b)) => {
                    s3_pending_uploads(&common::emulator_endpoint(kind), b).await
                }
                _ => 0,
            };
            staged.is_empty()
                && pending == 0
                && store.list().await.expect("list").is_empty()
                && store.size(&path).await.expect("size").is_none()
        }
    })
    .await;
    assert!(clean, "a dropped upload left something behind");

    // And gc finds nothing to remove either.
    let satchel = fx.satchel().await;
    let report = satchel::maintenance::gc(&satchel, false).await.expect("gc");
    assert!(
        report.orphan_blobs.is_empty() && report.staged_files.is_empty(),
        "{report}"
    );
}

/// A private emulator instance, so the shared one keeps running. Ended on drop.
struct Emulator {
    kind: Storage,
    port: u16,
    state: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Emulator {
    /// `None`: the binaries are not configured and skipping is allowed.
    async fn start(kind: Storage) -> Option<Emulator> {
        let var = match kind {
            Storage::Gcs => "FAKE_GCS_SERVER_BIN",
            Storage::S3 => "MOTO_SERVER_BIN",
            Storage::Local => return None,
        };
        if std::env::var_os(var).is_none() {
            assert!(
                common::skip_external(),
                "{var} is not set: source the env file of scripts/services.sh"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut emulator = Emulator {
            kind,
            port,
            state: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        emulator.resume_after_kill().await;
        Some(emulator)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process on the same port; fake-gcs-server keeps its state on disk.
    async fn resume_after_kill(&mut self) {
        let port = self.port.to_string();
        let mut command = match self.kind {
            Storage::Gcs => {
                let mut c = std::process::Command::new(
                    std::env::var_os("FAKE_GCS_SERVER_BIN").expect("FAKE_GCS_SERVER_BIN"),
                );
                c.args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port])
                    .args(["-backend", "filesystem", "-filesystem-root"])
                    .arg(self.state.path())
                    .args(["-public-host", &format!("127.0.0.1:{port}")])
                    .args(["-external-url", &self.endpoint(), "-log-level", "error"]);
                c
            }
            _ => {
                let mut c = std::process::Command::new(
                    std::env::var_os("MOTO_SERVER_BIN").expect("MOTO_SERVER_BIN"),
                );
                c.args(["-H", "127.0.0.1", "-p", &port]);
                c
            }
        };
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the emulator");
        self.child = Some(child);
        for _ in 0..600 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the private emulator did not start on port {}", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP / SIGCONT: the service hangs (connections accepted, no answers).
    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = std::process::Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An outage mid-stream is `StorageError::Unavailable` after the bounded retries, and nothing
/// is committed: GCS is killed (connections refused), S3 is frozen (requests time out).
async fn service_stopped_mid_stream(kind: Storage) {
    let _shared = EXCLUSIVE.read().await;
    if kind == Storage::Local || !storage_available(kind) {
        return; // no service to stop; disk failures are the local store's own tests' business
    }
    let Some(mut emulator) = Emulator::start(kind).await else {
        return;
    };
    let bucket = "outage";
    common::create_bucket_at(kind, &emulator.endpoint(), bucket).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = base_config(dir.path());
    match kind {
        Storage::Gcs => {
            config.media_gcs_bucket_name = Some(bucket.into());
            config.gcs_endpoint = Some(emulator.endpoint());
            config.gcs_credentials_file = std::env::var_os("GCS_CREDENTIALS_FILE").map(Into::into);
        }
        _ => {
            config.media_s3_bucket_name = Some(bucket.into());
            config.s3_endpoint = Some(emulator.endpoint());
            config.s3_region = Some("us-east-1".into());
        }
    }
    let tuning = StoreTuning {
        max_retries: 1,
        request_timeout: Duration::from_secs(3),
        io_timeout: Duration::from_secs(3),
        ..StoreTuning::default()
    };
    let store = satchel::storage::open_with(&config, &tuning)
        .await
        .expect("open");
    let path = store.storage_path(Uuid::new_v4(), Uuid::new_v4(), "outage.bin");

    let mut writer = store.create(&path).await.expect("create");
    let mut source = chunks(9, 64 * MIB, 256 * KIB);
    for chunk in source.by_ref().take(80) {
        writer.write(chunk).await.expect("write before the outage");
    }
    match kind {
        Storage::Gcs => emulator.kill(),
        _ => emulator.signal("-STOP"),
    }
    let started = std::time::Instant::now();
    let mut failure = None;
    for chunk in source {
        if let Err(e) = writer.write(chunk).await {
            failure = Some(e);
            break;
        }
    }
    let failure = match failure {
        Some(e) => {
            drop(writer);
            e
        }
        None => writer.finish().await.expect_err("finish during the outage"),
    };
    assert!(
        matches!(failure, StorageError::Unavailable(_)),
        "expected Unavailable, got {failure:?}"
    );
    eprintln!(
        "{kind:?}: outage reported after {:?}: {failure}",
        started.elapsed()
    );
    match kind {
        Storage::Gcs => emulator.resume_after_kill().await,
        _ => emulator.signal("-CONT"),
    }
    assert_eq!(
        store.size(&path).await.expect("size"),
        None,
        "nothing committed"
    );
    assert!(store.list().await.expect("list").is_empty());

    // Through the manager: the write fails with storage_unavailable, no record is committed.
    let catalog = satchel::catalog::connect(&config.database_url)
        .await
        .expect("catalog");
    let satchel = Satchel::from_parts(config, catalog, store.clone(), Arc::new(NoScan));
    let w = satchel.workspace("alice", None).await.expect("workspace");
    emulator.kill();
    let err = w
        .write_file(&b"during the outage"[..], "a.txt", WriteOptions::default())
        .await
        .expect_err("write while the service is down");
    assert_eq!(err.code, ErrorCode::StorageUnavailable, "{err}");
    assert!(err.code.retryable());
    assert_eq!(
        w.get_file_count(&Default::default()).await.expect("count"),
        0
    );
    if kind == Storage::Gcs {
        emulator.resume_after_kill().await;
        assert!(store.list().await.expect("list").is_empty());
    }
}

async fn presigned_urls_round_trip(kind: Storage) {
    let _shared = EXCLUSIVE.read().await;
    let Some(fx) = fixture(kind).await else {
        return;
    };
    let store = fx.store.as_ref();
    let bytes = data(5, 300 * KIB + 3);
    // A non-ASCII key (the storage name keeps letters of any script).
    let path = fx.new_path("r\u{e9}sum\u{e9}_1.pdf");
    put(store, &path, &bytes, 64 * KIB).await;
    let name = "r\u{e9}sum\u{e9} 1.pdf";
    let url = store
        .presign_read(&path, Duration::from_secs(300), name, "application/pdf")
        .await
        .expect("presign");
    let Some(url) = url else {
        assert_eq!(
            kind,
            Storage::Local,
            "only the local store has no native URLs"
        );
        return;
    };
    let parsed = url::Url::parse(&url).expect("a URL");
    assert_eq!(parsed.host_str(), Some("127.0.0.1"), "{url}");
    let query: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
    let (expires, algorithm, signature) = match kind {
        Storage::Gcs => ("X-Goog-Expires", "X-Goog-Algorithm", "X-Goog-Signature"),
        _ => ("X-Amz-Expires", "X-Amz-Algorithm", "X-Amz-Signature"),
    };
    assert_eq!(query.get(expires).map(String::as_str), Some("300"), "{url}");
    assert!(
        query.contains_key(algorithm) && query.contains_key(signature),
        "{url}"
    );
    assert_eq!(
        query.get("response-content-disposition"),
        Some(&satchel::storage::content_disposition(name)),
        "{url}"
    );
    assert_eq!(
        query.get("response-content-type").map(String::as_str),
        Some("application/pdf")
    );
    // No credentials: the URL alone fetches the bytes, and ranges work on it.
    let response = reqwest::get(&url).await.expect("GET the signed URL");
    assert_eq!(response.status(), 200);
    let disposition = response
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = response.bytes().await.expect("body");
    assert_eq!(&body[..], &bytes[..], "the signed URL returns the blob");
    if kind == Storage::S3 {
        // moto honours the override (fake-gcs-server does not; real GCS does).
        assert_eq!(
            disposition,
            Some(satchel::storage::content_disposition(name))
        );
    }
    let ranged = reqwest::Client::new()
        .get(&url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("ranged GET");
    assert_eq!(ranged.status(), 206);
    assert_eq!(&ranged.bytes().await.expect("body")[..], &bytes[10..20]);
    // Lifetimes outside 1 s ..= 7 days are refused.
    for bad in [Duration::ZERO, MAX_PRESIGN_EXPIRY + Duration::from_secs(1)] {
        let r = store
            .presign_read(&path, bad, name, "application/pdf")
            .await;
        assert!(matches!(r, Err(StorageError::InvalidInput(_))), "{bad:?}");
    }
    assert!(store
        .presign_read(&path, MAX_PRESIGN_EXPIRY, name, "application/pdf")
        .await
        .expect("7 days")
        .is_some());
}

/// gc and fsck on each store, through a Satchel on it (the workspace suite's gc test plants
/// backdated files on disk, which object stores cannot do: here orphans are fresh, so gc must
/// keep them and fsck must still report them).
async fn gc_and_fsck(kind: Storage) {
    let _shared = EXCLUSIVE.read().await;
    if !storage_available(kind) {
        return;
    }
    let Some(env) = with_storage(
        kind,
        TestEnv::new(Backend::Sqlite, &[("TRASH_RETENTION_DAYS", "0")]),
    )
    .await
    else {
        return;
    };
    let store = env.satchel.store().clone();
    let w = env.satchel.workspace("alice", None).await.expect("ws");
    let keep = w
        .write_file(&b"keep"[..], "keep", WriteOptions::default())
        .await
        .expect("write")
        .file;
    let gone = w
        .write_file(&b"gone"[..], "gone", WriteOptions::default())
        .await
        .expect("write")
        .file;
    w.delete_file(gone.id).await.expect("delete");
    assert!(satchel::maintenance::fsck(&env.satchel, true, false)
        .await
        .expect("fsck")
        .is_clean());
    // A blob no record references (a crash between store and commit), young.
    let orphan = store.storage_path(w.workspace_id(), Uuid::new_v4(), "orphan.bin");
    put(store.as_ref(), &orphan, b"o", 1).await;
    let report = satchel::maintenance::fsck(&env.satchel, false, false)
        .await
        .expect("fsck");
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_eq!(report.problems[0].kind, "orphan_blob");
    assert_eq!(report.problems[0].storage_path, orphan);
    let done = satchel::maintenance::gc(&env.satchel, false)
        .await
        .expect("gc");
    assert_eq!(done.trash_purged, vec![gone.id]);
    assert!(
        done.orphan_blobs.is_empty(),
        "young orphans are kept: {done}"
    );
    assert_eq!(store.size(&gone.storage_path).await.expect("size"), None);
    assert_eq!(store.size(&orphan).await.expect("size"), Some(1));
    store.delete(&orphan).await.expect("delete");
    // A record whose blob vanished, and one whose content changed (found by a deep check).
    store.delete(&keep.storage_path).await.expect("delete");
    let changed = w
        .write_file(&b"abc"[..], "c", WriteOptions::default())
        .await
        .expect("write")
        .file;
    store.delete(&changed.storage_path).await.expect("delete");
    put(store.as_ref(), &changed.storage_path, b"abd", 3).await;
    let shallow = satchel::maintenance::fsck(&env.satchel, false, false)
        .await
        .expect("fsck");
    assert_eq!(shallow.problems.len(), 1, "{shallow}");
    assert_eq!(shallow.problems[0].kind, "missing_blob");
    let deep = satchel::maintenance::fsck(&env.satchel, true, false)
        .await
        .expect("fsck");
    assert!(
        deep.problems.iter().any(|p| p.kind == "checksum_mismatch"),
        "{deep}"
    );
}

// --- migration -----------------------------------------------------------------------------------

/// Local → GCS / S3: every live file and trash version copied and verified, records rewritten,
/// a corrupt blob refused, the run resumable.
async fn migration(kind: Storage) {
    let _shared = EXCLUSIVE.read().await;
    if !storage_available(kind) {
        return;
    }
    let Some(env) = TestEnv::new(Backend::Sqlite, &[]).await else {
        return;
    };
    let w = env.satchel.workspace("alice", None).await.expect("ws");
    let big = data(11, 10 * MIB + 5);
    let overwrite = WriteOptions {
        on_conflict: satchel::OnConflict::Overwrite,
        ..Default::default()
    };
    w.write_file(&b"first version"[..], "a.txt", WriteOptions::default())
        .await
        .expect("write");
    let a = w
        .write_file(&b"second version"[..], "a.txt", overwrite)
        .await
        .expect("overwrite")
        .file;
    let big_file = w
        .write_file(big.clone(), "big.bin", WriteOptions::default())
        .await
        .expect("write")
        .file;
    w.write_file(Bytes::new(), "empty", WriteOptions::default())
        .await
        .expect("write");
    let bad = w
        .write_file(
            &b"will be corrupted"[..],
            "bad.txt",
            WriteOptions::default(),
        )
        .await
        .expect("write")
        .file;
    let deleted = w
        .write_file(&b"deleted"[..], "deleted.txt", WriteOptions::default())
        .await
        .expect("write")
        .file;
    w.delete_file(deleted.id).await.expect("delete");
    let records = 6; // 4 live, 2 in the trash

    // Corrupt one blob on disk (same length, other bytes): it must not be migrated.
    let bad_disk = env
        .storage_dir()
        .join(bad.workspace_id.to_string())
        .join(
            bad.storage_path
                .rsplit('/')
                .nth(1)
                .expect("file id in the path"),
        )
        .join("bad.txt");
    std::fs::write(&bad_disk, b"WILL BE CORRUPTED").expect("corrupt");

    let target_config = common::configure_storage(env.satchel.config().clone(), kind).await;
    let target = satchel::storage::open_from_config(&target_config)
        .await
        .expect("target store");

    let first = satchel::storage::migrate_storage(&env.satchel, target.clone(), 2)
        .await
        .expect("migrate");
    assert_eq!(first.records, records, "{first}");
    assert_eq!(first.copied, records - 1, "{first}");
    assert_eq!(first.failed.len(), 1, "{first}");
    assert_eq!(first.failed[0].file_id, bad.id);
    let bad_target = target.storage_path(
        bad.workspace_id,
        Uuid::parse_str(bad.storage_path.rsplit('/').nth(1).expect("id")).expect("uuid"),
        "bad.txt",
    );
    assert_eq!(
        target.size(&bad_target).await.expect("size"),
        None,
        "nothing unverified"
    );

    // Fix the blob; the second run moves only it.
    std::fs::write(&bad_disk, b"will be corrupted").expect("repair");
    let second = satchel::storage::migrate_storage(&env.satchel, target.clone(), 2)
        .await
        .expect("migrate again");
    assert_eq!(
        (second.copied, second.already_migrated, second.failed.len()),
        (1, records - 1, 0),
        "{second}"
    );
    let third = satchel::storage::migrate_storage(&env.satchel, target.clone(), 100)
        .await
        .expect("migrate a third time");
    assert_eq!(
        (third.copied, third.already_migrated),
        (0, records),
        "{third}"
    );

    // A Satchel on the target serves everything, trash included.
    let moved = Satchel::from_parts(
        target_config,
        env.satchel.catalog().clone(),
        target.clone(),
        Arc::new(NoScan),
    );
    let w2 = moved.workspace("alice", None).await.expect("ws");
    assert_eq!(
        &w2.read_file("/a.txt").await.expect("read")[..],
        b"second version"
    );
    assert_eq!(w2.read_file_by_id(big_file.id).await.expect("read"), big);
    assert_eq!(w2.read_file("/empty").await.expect("read").len(), 0);
    assert_eq!(
        &w2.read_file("/bad.txt").await.expect("read")[..],
        b"will be corrupted"
    );
    let restored = w2.restore_file(deleted.id, None).await.expect("restore");
    assert_eq!(
        &w2.read_file_by_id(restored.id).await.expect("read")[..],
        b"deleted"
    );
    let report = satchel::maintenance::fsck(&moved, true, false)
        .await
        .expect("fsck");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.records_checked, records);
    assert!(w2
        .get_file_info(a.id)
        .await
        .expect("info")
        .storage_path
        .starts_with(&format!("{}://", target.backend())));
}

mod migrate_to {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn gcs() {
        migration(Storage::Gcs).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn s3() {
        migration(Storage::S3).await
    }
}

// --- signing against published test vectors ------------------------------------------------------
// Neither emulator checks signatures. These tests recompute signatures independently, following
// the AWS SigV4 and Google V4 specifications: first reproducing the published examples exactly
// (so the recomputation is right), then the stores' own signed URLs (so theirs are right, with
// our response-content-* overrides), without any network.

/// RFC 3986 unreserved characters stay; everything else is %XX (upper case). SigV4 and
/// Google V4 encode canonical query strings this way, and paths too with `/` kept.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical request of a presigned GET (`SignedHeaders=host`, unsigned payload), the
/// query parameter carrying the signature removed; returns it with the signature and the
/// parameters.
fn canonical_presigned_get(
    url: &str,
    signature_param: &str,
) -> (String, String, HashMap<String, String>) {
    let parsed = url::Url::parse(url).expect("URL");
    let mut signature = None;
    let mut pairs = Vec::new();
    let mut params = HashMap::new();
    for (k, v) in parsed.query_pairs() {
        if k.eq_ignore_ascii_case(signature_param) {
            signature = Some(v.into_owned());
            continue;
        }
        params.insert(k.to_string(), v.to_string());
        pairs.push((uri_encode(&k, false), uri_encode(&v, false)));
    }
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let path = percent_encoding::percent_decode_str(parsed.path())
        .decode_utf8()
        .expect("UTF-8 path");
    let host = match parsed.port() {
        Some(port) => format!("{}:{port}", parsed.host_str().expect("host")),
        None => parsed.host_str().expect("host").to_owned(),
    };
    let signed_headers = params
        .iter()
        .find(|(k, _)| k.ends_with("-SignedHeaders"))
        .map(|(_, v)| v.as_str());
    assert_eq!(signed_headers, Some("host"), "{url}");
    let canonical = format!(
        "GET\n{}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD",
        uri_encode(&path, true)
    );
    (canonical, signature.expect("a signature"), params)
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key size");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// AWS SigV4 query signature of a presigned GET URL, recomputed from `secret`.
fn sigv4_signature(url: &str, secret: &str) -> (String, String) {
    let (canonical, signature, params) = canonical_presigned_get(url, "X-Amz-Signature");
    let date = &params["X-Amz-Date"];
    let credential = &params["X-Amz-Credential"];
    let scope = credential.split_once('/').expect("scope").1;
    let mut parts = scope.split('/');
    let (day, region, service) = (
        parts.next().expect("day"),
        parts.next().expect("region"),
        parts.next().expect("service"),
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), day);
    for part in [region, service, "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    (hex::encode(hmac_sha256(&key, &string_to_sign)), signature)
}

/// Google V4 (GOOG4-RSA-SHA256) signature of a signed GET URL, recomputed with the key.
fn goog4_signature(url: &str, private_key_pem: &str) -> (String, String) {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let (canonical, signature, params) = canonical_presigned_get(url, "X-Goog-Signature");
    let date = &params["X-Goog-Date"];
    let scope = params["X-Goog-Credential"]
        .split_once('/')
        .expect("scope")
        .1
        .to_owned();
    let string_to_sign = format!(
        "GOOG4-RSA-SHA256\n{date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_key_pem).expect("PKCS#8 key");
    let signer = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(key);
    let computed = hex::encode(signer.sign(string_to_sign.as_bytes()).to_bytes());
    (computed, signature.to_lowercase())
}

/// From "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)".
const AWS_EXAMPLE_URL: &str = "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
const AWS_EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// googleapis/conformance-tests storage/v1: the dummy (inactive, published) service account
/// and expected URLs of `v4_signatures.json` ("Simple GET", "Vary expiration and timestamp",
/// "Query Parameter Encoding").
const GOOGLE_TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCsPzMirIottfQ2\nryjQmPWocSEeGo7f7Q4/tMQXHlXFzo93AGgU2t+clEj9L5loNhLVq+vk+qmnyDz5\nQ04y8jVWyMYzzGNNrGRW/yaYqnqlKZCy1O3bmnNjV7EDbC/jE1ZLBY0U3HaSHfn6\nS9ND8MXdgD0/ulRTWwq6vU8/w6i5tYsU7n2LLlQTl1fQ7/emO9nYcCFJezHZVa0H\nmeWsdHwWsok0skwQYQNIzP3JF9BpR5gJT2gNge6KopDesJeLoLzaX7cUnDn+CAnn\nLuLDwwSsIVKyVxhBFsFXPplgpaQRwmGzwEbf/Xpt9qo26w2UMgn30jsOaKlSeAX8\ncS6ViF+tAgMBAAECggEACKRuJCP8leEOhQziUx8Nmls8wmYqO4WJJLyk5xUMUC22\nSI4CauN1e0V8aQmxnIc0CDkFT7qc9xBmsMoF+yvobbeKrFApvlyzNyM7tEa/exh8\nDGD/IzjbZ8VfWhDcUTwn5QE9DCoon9m1sG+MBNlokB3OVOt8LieAAREdEBG43kJu\nyQTOkY9BGR2AY1FnAl2VZ/jhNDyrme3tp1sW1BJrawzR7Ujo8DzlVcS2geKA9at7\n55ua5GbHz3hfzFgjVXDfnkWzId6aHypUyqHrSn1SqGEbyXTaleKTc6Pgv0PgkJjG\nhZazWWdSuf1T5Xbs0OhAK9qraoAzT6cXXvMEvvPt6QKBgQDXcZKqJAOnGEU4b9+v\nOdoh+nssdrIOBNMu1m8mYbUVYS1aakc1iDGIIWNM3qAwbG+yNEIi2xi80a2RMw2T\n9RyCNB7yqCXXVKLBiwg9FbKMai6Vpk2bWIrzahM9on7AhCax/X2AeOp+UyYhFEy6\nUFG4aHb8THscL7b515ukSuKb5QKBgQDMq+9PuaB0eHsrmL6q4vHNi3MLgijGg/zu\nAXaPygSYAwYW8KglcuLZPvWrL6OG0+CrfmaWTLsyIZO4Uhdj7MLvX6yK7IMnagvk\nL3xjgxSklEHJAwi5wFeJ8ai/1MIuCn8p2re3CbwISKpvf7Sgs/W4196P4vKvTiAz\njcTiSYFIKQKBgCjMpkS4O0TakMlGTmsFnqyOneLmu4NyIHgfPb9cA4n/9DHKLKAT\noaWxBPgatOVWs7RgtyGYsk+XubHkpC6f3X0+15mGhFwJ+CSE6tN+l2iF9zp52vqP\nQwkjzm7+pdhZbmaIpcq9m1K+9lqPWJRz/3XXuqi+5xWIZ7NaxGvRjqaNAoGAdK2b\nutZ2y48XoI3uPFsuP+A8kJX+CtWZrlE1NtmS7tnicdd19AtfmTuUL6fz0FwfW4Su\nlQZfPT/5B339CaEiq/Xd1kDor+J7rvUHM2+5p+1A54gMRGCLRv92FQ4EON0RC1o9\nm2I4SHysdO3XmjmdXmfp4BsgAKJIJzutvtbqlakCgYB+Cb10z37NJJ+WgjDt+yT2\nyUNH17EAYgWXryfRgTyi2POHuJitd64Xzuy6oBVs3wVveYFM6PIKXlj8/DahYX5I\nR2WIzoCNLL3bEZ+nC6Jofpb4kspoAeRporj29SgesK6QBYWHWX2H645RkRGYGpDo\n51gjy9m/hSNqBbH2zmh04A==\n-----END PRIVATE KEY-----\n";
const GOOGLE_TEST_EMAIL: &str = "test-iam-credentials@dummy-project-id.iam.gserviceaccount.com";
const GOOGLE_EXAMPLE_URLS: [&str; 3] = [
    "https://storage.googleapis.com/test-bucket/test-object?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=test-iam-credentials%40dummy-project-id.iam.gserviceaccount.com%2F20190201%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20190201T090000Z&X-Goog-Expires=10&X-Goog-SignedHeaders=host&X-Goog-Signature=95e6a13d43a1d1962e667f17397f2b80ac9bdd1669210d5e08e0135df9dff4e56113485dbe429ca2266487b9d1796ebdee2d7cf682a6ef3bb9fbb4c351686fba90d7b621cf1c4eb1fdf126460dd25fa0837dfdde0a9fd98662ce60844c458448fb2b352c203d9969cb74efa4bdb742287744a4f2308afa4af0e0773f55e32e92973619249214b97283b2daa14195244444e33f938138d1e5f561088ce8011f4986dda33a556412594db7c12fc40e1ff3f1bedeb7a42f5bcda0b9567f17f65855f65071fabb88ea12371877f3f77f10e1466fff6ff6973b74a933322ff0949ce357e20abe96c3dd5cfab42c9c83e740a4d32b9e11e146f0eb3404d2e975896f74",
    "https://storage.googleapis.com/test-bucket/test-object?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=test-iam-credentials%40dummy-project-id.iam.gserviceaccount.com%2F20190301%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20190301T090000Z&X-Goog-Expires=20&X-Goog-SignedHeaders=host&X-Goog-Signature=9669ed5b10664dc594c758296580662912cf4bcc5a4ba0b6bf055bcbf6f34eed7bdad664f534962174a924741a0c273a4f67bc1847cef20192a6beab44223bd9d4fbbd749c407b79997598c30f82ddc269ff47ec09fa3afe74e00616d438df0d96a7d8ad0adacfad1dc3286f864d924fe919fb0dce45d3d975c5afe8e13af2db9cc37ba77835f92f7669b61e94c6d562196c1274529e76cfff1564cc2cad7d5387dc8e12f7a5dfd925685fe92c30b43709eee29fa2f66067472cee5423d1a3a4182fe8cea75c9329d181dc6acad7c393cd04f8bf5bc0515127d8ebd65d80c08e19ad03316053ea60033fd1b1fd85a69c576415da3bf0a3718d9ea6d03e0d66f0",
    "https://storage.googleapis.com/test-bucket/test-object?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=test-iam-credentials%40dummy-project-id.iam.gserviceaccount.com%2F20190201%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20190201T090000Z&X-Goog-Expires=10&X-Goog-SignedHeaders=host&souffl%C3%A9=%3D%25-_.~&X-Goog-Signature=38dd9ca622b80bca10f405e7d9ba0f0fbea719ca84d66078a484c5b54b1ce98e3fa8a0d2065216ed6ac03179be69312dabf428f8171b95994bdafe465a6f7893bacc7213a7bf4054ce2d78d4b60c34df24cc43e509ad7c81be47148d43a0e67d50d8fe38c85b0c63f9a51149b4f3335315946fef8ab34315ce3f6ce01f1831abb3eda5e7e211823855ed1767c65a8c7aeec357de096e3406897acfe092fead51bbea7df83e25a6180f80c8a0871e4901c370f77f5675f2405be7ccd55fd6dd22a87cf0adfafdb3f6fa99974fcf6c947b62294eebd7954e546c28f5490a6c50694c0e4882fcfe0d4a4ae8891a92579d6099a9b4c84d9f033a3b339163b6670b7e",
];

#[test]
fn sigv4_recomputation_matches_the_aws_example() {
    let (computed, published) = sigv4_signature(AWS_EXAMPLE_URL, AWS_EXAMPLE_SECRET);
    assert_eq!(computed, published);
}

#[test]
fn goog4_recomputation_matches_googles_conformance_vectors() {
    for url in GOOGLE_EXAMPLE_URLS {
        let (computed, published) = goog4_signature(url, GOOGLE_TEST_KEY);
        assert_eq!(computed, published, "{url}");
    }
}

/// A GCS store signing with the conformance-test key, against the real endpoint (production
/// mode: OAuth for I/O, never used here) and an emulator endpoint; no request is made.
#[tokio::test]
async fn gcs_signed_urls_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("sa.json");
    let key = serde_json::json!({
        "type": "service_account",
        "client_email": GOOGLE_TEST_EMAIL,
        "private_key": GOOGLE_TEST_KEY,
    });
    std::fs::write(&key_file, key.to_string()).expect("key file");
    let tuning = StoreTuning {
        verify_bucket: false,
        ..StoreTuning::default()
    };
    for endpoint in ["https://storage.googleapis.com", "http://127.0.0.1:4443"] {
        let mut config = base_config(dir.path());
        config.media_gcs_bucket_name = Some("test-bucket".into());
        config.gcs_endpoint = Some(endpoint.into());
        config.gcs_credentials_file = Some(key_file.clone());
        let store = satchel::storage::open_with(&config, &tuning)
            .await
            .expect("open without network");
        let path = store.storage_path(Uuid::new_v4(), Uuid::new_v4(), "caf\u{e9} (1).txt");
        let url = store
            .presign_read(
                &path,
                Duration::from_secs(3600),
                "caf\u{e9} \"1\".txt",
                "text/plain",
            )
            .await
            .expect("presign")
            .expect("a URL");
        assert!(url.starts_with(endpoint), "{url}");
        let (computed, in_url) = goog4_signature(&url, GOOGLE_TEST_KEY);
        assert_eq!(computed, in_url, "{url}");
    }
}

/// An S3 store's presigned URLs verify with the SigV4 recomputation (keys from AWS_*).
#[tokio::test]
async fn s3_signed_urls_verify() {
    if !storage_available(Storage::S3) {
        return;
    }
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY");
    let dir = tempfile::tempdir().expect("tempdir");
    let tuning = StoreTuning {
        verify_bucket: false,
        ..StoreTuning::default()
    };
    for (endpoint, path_style) in [
        (None, false),
        (Some("http://127.0.0.1:9000"), false),
        (Some("https://minio.example:9000"), true),
    ] {
        let mut config = base_config(dir.path());
        config.media_s3_bucket_name = Some("examplebucket".into());
        config.s3_region = Some("eu-west-1".into());
        config.s3_endpoint = endpoint.map(str::to_owned);
        config.s3_force_path_style = path_style;
        let store = satchel::storage::open_with(&config, &tuning)
            .await
            .expect("open without network");
        let path = store.storage_path(Uuid::new_v4(), Uuid::new_v4(), "na\u{ef}ve+1.txt");
        let url = store
            .presign_read(
                &path,
                Duration::from_secs(900),
                "na\u{ef}ve +1.txt",
                "text/plain",
            )
            .await
            .expect("presign")
            .expect("a URL");
        let (computed, in_url) = sigv4_signature(&url, &secret);
        assert_eq!(computed, in_url, "{url}");
        let host = url::Url::parse(&url)
            .expect("URL")
            .host_str()
            .map(str::to_owned);
        match endpoint {
            None => assert_eq!(
                host.as_deref(),
                Some("examplebucket.s3.eu-west-1.amazonaws.com"),
                "AWS: virtual-host style"
            ),
            Some(e) => assert!(url.starts_with(&format!("{e}/examplebucket/")), "{url}"),
        }
    }
}

/// Misconfiguration fails at open, naming the key.
#[tokio::test]
async fn misconfiguration_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = base_config(dir.path());
    config.media_gcs_bucket_name = Some("b".into());
    config.gcs_credentials_file = Some(dir.path().join("missing.json"));
    let err = satchel::storage::open_from_config(&config)
        .await
        .err()
        .expect("a missing key file fails");
    assert!(err.message.contains("gcs_credentials_file"), "{err}");

    std::fs::write(
        dir.path().join("user.json"),
        r#"{"type":"authorized_user"}"#,
    )
    .expect("w");
    config.gcs_credentials_file = Some(dir.path().join("user.json"));
    let err = satchel::storage::open_from_config(&config)
        .await
        .err()
        .expect("a non-service-account key fails");
    assert!(err.message.contains("service_account"), "{err}");

    let garbage = serde_json::json!({
        "type": "service_account",
        "client_email": "x@y.iam.gserviceaccount.com",
        "private_key": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    });
    std::fs::write(dir.path().join("garbage.json"), garbage.to_string()).expect("w");
    config.gcs_credentials_file = Some(dir.path().join("garbage.json"));
    let err = satchel::storage::open_from_config(&config)
        .await
        .err()
        .expect("a key that cannot sign fails at start-up");
    assert!(
        err.message.contains("gcs_credentials_file") && err.message.contains("sign"),
        "{err}"
    );

    let mut config = base_config(dir.path());
    config.media_s3_bucket_name = Some("b".into());
    config.s3_region = Some("us-east-1".into());
    config.s3_endpoint = Some("ftp://x".into());
    let err = satchel::storage::open_from_config(&config)
        .await
        .err()
        .expect("a bad endpoint fails");
    assert!(err.message.contains("s3_endpoint"), "{err}");

    // A bucket that does not exist on a running emulator: a clear start-up error.
    for kind in [Storage::Gcs, Storage::S3] {
        if !storage_available(kind) {
            continue;
        }
        let mut config = common::configure_storage(base_config(dir.path()), kind).await;
        let key = match kind {
            Storage::Gcs => {
                config.media_gcs_bucket_name = Some("no-such-bucket".into());
                "media_gcs_bucket_name"
            }
            _ => {
                config.media_s3_bucket_name = Some("no-such-bucket".into());
                "media_s3_bucket_name"
            }
        };
        let err = satchel::storage::open_from_config(&config)
            .await
            .err()
            .expect("an unknown bucket fails");
        assert!(err.message.contains(key), "{err}");
        assert_eq!(err.code, ErrorCode::StorageUnavailable);
    }
}
