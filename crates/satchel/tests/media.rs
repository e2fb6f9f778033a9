//! `store_media_file` end to end (SPEC §6) with real components: the catalog (SQLite, and
//! PostgreSQL for the workspace tests), local storage, a real execution folder, the guarded
//! fetcher against a local origin server, and clamd for the EICAR tests (`CLAMD_ADDR`).
//!
//! No test opens a connection outside this machine, even if the guard were broken: the
//! fetched URLs only ever name loopback spellings (`127.0.0.1`, `localhost`, `[::1]`,
//! `0x7f000001`, `2130706433`, `127.1`, `[::ffff:127.0.0.1]`, `0.0.0.0`) with the port of a
//! local origin that counts the requests it gets. Addresses that are not on this machine
//! (169.254.169.254, 10.0.0.1, …) are tested only through the pure policy function.

mod common;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use common::{Backend, TestEnv};
use futures::StreamExt as _;
use satchel::media::{self, clean_exec_files, store_media_file, ExecutionContext, ReturnFormat};
use satchel::scanner::{NoScan, Scanner};
use satchel::storage::{
    BlobEntry, BlobStore, BlobStream, BlobWriter, ByteRange, LocalStore, StorageResult,
};
use satchel::{ErrorCode, ErrorDetail, Satchel, WorkspaceManager, WriteOptions};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use uuid::Uuid;

use ReturnFormat::{ForBlockOutput, ForExternalApi, ForLocalProcessing};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR not really a png";
const SESSION: &str = "chat-1";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn data_uri(mime: &str, data: &[u8]) -> String {
    format!("data:{mime};base64,{}", b64(data))
}

/// The EICAR test string, assembled at run time so this file is not itself "infected".
fn eicar() -> Vec<u8> {
    let mut s = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-".to_vec();
    s.extend_from_slice(b"STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    s
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The local origin server.

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    cookie: Option<String>,
}

#[derive(Clone, Default)]
struct OriginState {
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// An HTTP server on 127.0.0.1 (and [::1] on the same port when possible) that counts every
/// request it receives.
struct Origin {
    port: u16,
    state: OriginState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Origin {
    async fn start() -> Origin {
        let state = OriginState::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let v4 = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let port = v4.local_addr().expect("local addr").port();
        let mut tasks = vec![tokio::spawn(serve(v4, app.clone()))];
        if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
            tasks.push(tokio::spawn(serve(v6, app)));
        }
        Origin { port, state, tasks }
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen").clone()
    }

    /// `http://localhost:{port}{path}`: the allow-listed name.
    fn url(&self, path: &str) -> String {
        self.url_at("localhost", path)
    }

    fn url_at(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let _ = axum::serve(listener, app).await;
}

fn redirect(status: StatusCode, to: &str) -> Response {
    (
        status,
        [
            (header::LOCATION, to.to_owned()),
            (header::SET_COOKIE, "sid=secret; Path=/".to_owned()),
        ],
    )
        .into_response()
}

async fn handle(State(state): State<OriginState>, request: Request) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let header_of = |name: header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Seen {
        path: request.uri().path().to_owned(),
        authorization: header_of(header::AUTHORIZATION),
        cookie: header_of(header::COOKIE),
    };
    state.seen.lock().expect("seen").push(seen.clone());
    let query = request.uri().query().unwrap_or("").to_owned();
    let segments: Vec<&str> = seen.path.trim_start_matches('/').split('/').collect();
    let number = |s: &str| s.parse::<usize>().unwrap_or(0);
    match segments.as_slice() {
        ["img", "photo.png"] => ([(header::CONTENT_TYPE, "image/png")], PNG).into_response(),
        ["noext"] => ([(header::CONTENT_TYPE, "application/pdf")], "%PDF-1.4 fake").into_response(),
        ["octet", "table.csv"] => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            "a,b\n1,2\n",
        )
            .into_response(),
        ["big"] => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            vec![7u8; 2 * MIB],
        )
            .into_response(),
        // `kib` KiB of noise, chunked (no Content-Length).
        ["chunked", kib, seed] => {
            let data = noise(number(kib) * KIB, number(seed) as u64);
            let chunks: Vec<Result<Bytes, std::io::Error>> = data
                .chunks(16 * KIB)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Body::from_stream(futures::stream::iter(chunks)).into_response()
        }
        ["slow"] => {
            let body =
                futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("start")) })
                    .chain(futures::stream::once(async {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok(Bytes::from("end"))
                    }));
            Body::from_stream(body).into_response()
        }
        ["status", code] => StatusCode::from_u16(number(code) as u16)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        ["redirect"] => {
            let to = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "to")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            redirect(StatusCode::FOUND, &to)
        }
        ["loop", n] => redirect(
            StatusCode::MOVED_PERMANENTLY,
            &format!("/loop/{}", number(n) + 1),
        ),
        ["chain", "0"] => ([(header::CONTENT_TYPE, "text/plain")], "end of chain").into_response(),
        ["chain", n] => redirect(
            StatusCode::TEMPORARY_REDIRECT,
            &format!("/chain/{}", number(n) - 1),
        ),
        ["echo"] => format!(
            "authorization={:?} cookie={:?}",
            seen.authorization, seen.cookie
        )
        .into_response(),
        ["eicar"] => ([(header::CONTENT_TYPE, "text/plain")], eicar()).into_response(),
        ["v", version, "same.txt"] => (
            [(header::CONTENT_TYPE, "text/plain")],
            format!("version {version}"),
        )
            .into_response(),
        _ => "hello".into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// The environment: a TestEnv plus an execution-folder root of its own.

struct MediaEnv {
    env: TestEnv,
    exec_root: tempfile::TempDir,
}

impl MediaEnv {
    async fn new(backend: Backend, vars: &[(&str, &str)]) -> Option<MediaEnv> {
        Self::with_scanner(backend, vars, Arc::new(NoScan)).await
    }

    async fn with_scanner(
        backend: Backend,
        vars: &[(&str, &str)],
        scanner: Arc<dyn Scanner>,
    ) -> Option<MediaEnv> {
        let exec_root = tempfile::tempdir().expect("tempdir");
        let exec = exec_root.path().display().to_string();
        let mut all = vars.to_vec();
        all.push(("EXEC_FILE_DIR", &exec));
        let env = TestEnv::with_scanner(backend, &all, scanner).await?;
        Some(MediaEnv { env, exec_root })
    }

    /// With the local origin allow-listed by name.
    async fn allowing_localhost(backend: Backend, vars: &[(&str, &str)]) -> Option<MediaEnv> {
        let mut all = vars.to_vec();
        all.push(("MEDIA_URL_ALLOW_HOSTS", "localhost"));
        Self::new(backend, &all).await
    }

    fn satchel(&self) -> &Satchel {
        &self.env.satchel
    }

    fn folder(&self, exec_id: &str) -> PathBuf {
        self.exec_root.path().join(exec_id)
    }

    /// Every file (hidden ones included) under an execution folder.
    fn files(&self, exec_id: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.folder(exec_id), &mut out);
        out
    }

    fn read(&self, exec_id: &str, rel: &str) -> Vec<u8> {
        std::fs::read(self.folder(exec_id).join(rel)).expect("file in the execution folder")
    }

    async fn store(
        &self,
        file: &str,
        ctx: &ExecutionContext,
        format: ReturnFormat,
    ) -> satchel::Result<String> {
        store_media_file(self.satchel(), file, ctx, format).await
    }

    async fn workspace(&self, user: &str, session: Option<&str>) -> WorkspaceManager {
        self.satchel()
            .workspace(user, session)
            .await
            .expect("workspace")
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, out),
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
}

fn folder_bytes(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn graph_ctx(exec_id: &str) -> ExecutionContext {
    ExecutionContext::new(exec_id, "alice")
}

#[track_caller]
fn assert_code(result: satchel::Result<String>, code: ErrorCode) -> satchel::Error {
    match result {
        Err(e) => {
            assert_eq!(e.code, code, "{e}");
            e
        }
        Ok(v) => panic!("expected {code}, got Ok({:.120})", v),
    }
}

/// A clamd-backed environment from `CLAMD_ADDR`, or `None` when external tests are skipped.
async fn scanning_env(vars: &[(&str, &str)]) -> Option<MediaEnv> {
    let Ok(addr) = std::env::var("CLAMD_ADDR") else {
        assert!(
            common::skip_external(),
            "CLAMD_ADDR is not set: run scripts/services.sh start (or set SATCHEL_SKIP_EXTERNAL=1)"
        );
        return None;
    };
    let (host, port) = addr.rsplit_once(':').expect("CLAMD_ADDR is host:port");
    let mut all: Vec<(&str, &str)> = vec![
        ("CLAMAV_SERVICE_ENABLED", "true"),
        ("CLAMAV_SERVICE_HOST", host),
        ("CLAMAV_SERVICE_PORT", port),
        ("CLAMAV_SERVICE_TIMEOUT", "30"),
    ];
    all.extend_from_slice(vars);
    let probe = satchel::Config::from_sources(
        None,
        &all.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .expect("config");
    let scanner = satchel::workspace::scanner_from_config(&probe);
    MediaEnv::with_scanner(Backend::Sqlite, &all, scanner).await
}

// ---------------------------------------------------------------------------------------------
// Context and input validation.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_context_is_validated() {
    let env = MediaEnv::new(Backend::Sqlite, &[]).await.expect("env");
    let file = data_uri("text/plain", b"x");
    for (exec, user, session) in [
        ("", "alice", None),
        ("../..", "alice", None),
        ("..", "alice", None),
        ("a/b", "alice", None),
        ("a b", "alice", None),
        ("ok", "", None),
        ("ok", "alice", Some("bad/session")),
    ] {
        let mut ctx = ExecutionContext::new(exec, user);
        ctx.session_id = session.map(str::to_owned);
        assert_code(
            env.store(&file, &ctx, ForLocalProcessing).await,
            ErrorCode::InvalidInput,
        );
    }
    assert!(std::fs::read_dir(env.exec_root.path())
        .expect("exec root")
        .next()
        .is_none());
    assert_eq!(
        ReturnFormat::parse("for_everything").unwrap_err().code,
        ErrorCode::InvalidInput
    );
    assert_eq!(
        "for_block_output".parse::<ReturnFormat>().unwrap(),
        ForBlockOutput
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_schemes_are_invalid_input() {
    let env = MediaEnv::allowing_localhost(Backend::Sqlite, &[])
        .await
        .expect("env");
    let ctx = graph_ctx("schemes");
    for bad in [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://x",
        "ftp://localhost/a.png",
        "gopher://x",
        "local://x/y/z",
        "javascript:alert(1)",
        "",
    ] {
        assert_code(
            env.store(bad, &ctx, ForLocalProcessing).await,
            ErrorCode::InvalidInput,
        );
    }
    assert!(env.files("schemes").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Data URIs.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_uris_are_decoded_into_the_folder() {
    let env = MediaEnv::new(Backend::Sqlite, &[("MAX_FILE_SIZE_MB", "1")])
        .await
        .expect("env");
    let ctx = graph_ctx("data");
    let name = env
        .store(&data_uri("image/png", PNG), &ctx, ForLocalProcessing)
        .await
        .unwrap();
    assert!(name.ends_with(".png"), "{name}");
    assert!(
        Uuid::parse_str(name.trim_end_matches(".png")).is_ok(),
        "{name}"
    );
    assert_eq!(env.read("data", &name), PNG);

    let name = env
        .store("DATA:,hello%20world", &ctx, ForLocalProcessing)
        .await
        .unwrap();
    assert!(name.ends_with(".txt"), "{name}");
    assert_eq!(env.read("data", &name), b"hello world");
    let before = env.files("data").len();

    for bad in [
        "data:image/png;base64,aGVsbG8",
        "data:image/png;base64,aGVs bG8=",
        "data:image/png;base64,****",
        "data:image/png;base64",
        "data:,50%",
    ] {
        assert_code(
            env.store(bad, &ctx, ForLocalProcessing).await,
            ErrorCode::InvalidDataUri,
        );
    }
    // A bad character far into a multi-chunk payload: found while decoding, nothing kept.
    let mut payload = b64(&noise(600 * KIB, 3));
    payload.replace_range(payload.len() - 10..payload.len() - 9, "!");
    assert_code(
        env.store(
            &format!("data:application/octet-stream;base64,{payload}"),
            &ctx,
            ForLocalProcessing,
        )
        .await,
        ErrorCode::InvalidDataUri,
    );
    // Exactly the cap is accepted; one byte more is refused before anything is written.
    let exact = data_uri("application/octet-stream", &noise(MIB, 4));
    env.store(&exact, &ctx, ForLocalProcessing).await.unwrap();
    let over = data_uri("application/octet-stream", &noise(MIB + 1, 5));
    assert_code(
        env.store(&over, &ctx, ForLocalProcessing).await,
        ErrorCode::FileTooLarge,
    );
    let over_percent = format!("data:,{}", "a".repeat(MIB + 1));
    assert_code(
        env.store(&over_percent, &ctx, ForLocalProcessing).await,
        ErrorCode::FileTooLarge,
    );
    assert_eq!(
        env.files("data").len(),
        before + 1,
        "only the exact-cap file was added"
    );
}

// ---------------------------------------------------------------------------------------------
// URLs: the allow-listed local origin.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn urls_are_fetched_named_and_typed() {
    let origin = Origin::start().await;
    let env = MediaEnv::allowing_localhost(Backend::Sqlite, &[])
        .await
        .expect("env");
    let ctx = graph_ctx("fetch");

    let name = env
        .store(
            &origin.url("/img/photo.png?size=2"),
            &ctx,
            ForLocalProcessing,
        )
        .await
        .unwrap();
    assert_eq!(name, "photo.png");
    assert_eq!(env.read("fetch", &name), PNG);
    // The extension comes from Content-Type when the URL has none.
    assert_eq!(
        env.store(&origin.url("/noext"), &ctx, ForLocalProcessing)
            .await
            .unwrap(),
        "noext.pdf"
    );
    // A generic Content-Type: the MIME type is guessed from the name.
    assert_eq!(
        env.store(&origin.url("/octet/table.csv"), &ctx, ForExternalApi)
            .await
            .unwrap(),
        format!("data:text/csv;base64,{}", b64(b"a,b\n1,2\n"))
    );
    // No usable last segment.
    let name = env
        .store(&origin.url("/"), &ctx, ForLocalProcessing)
        .await
        .unwrap();
    assert_eq!(name, "download.txt");
    assert_eq!(env.read("fetch", &name), b"hello");
    // Case-insensitive scheme; the name is percent-decoded and sanitised.
    let name = env
        .store(
            &format!("HTTP://localhost:{}/v/1/same.txt", origin.port),
            &ctx,
            ForLocalProcessing,
        )
        .await
        .unwrap();
    assert_eq!(name, "same.txt");

    // Identical content reuses the file, other content under the same name gets a suffix.
    let v = |n: u32| origin.url(&format!("/v/{n}/same.txt"));
    assert_eq!(
        env.store(&v(1), &ctx, ForLocalProcessing).await.unwrap(),
        "same.txt"
    );
    assert_eq!(
        env.store(&v(2), &ctx, ForLocalProcessing).await.unwrap(),
        "same-1.txt"
    );
    assert_eq!(
        env.store(&v(3), &ctx, ForLocalProcessing).await.unwrap(),
        "same-2.txt"
    );
    assert_eq!(
        env.store(&v(2), &ctx, ForLocalProcessing).await.unwrap(),
        "same-1.txt"
    );
    assert_eq!(env.read("fetch", "same-2.txt"), b"version 3");
    let names: Vec<String> = env
        .files("fetch")
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "no staged file left: {names:?}"
    );
    assert_eq!(names.iter().filter(|n| n.starts_with("same")).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redirects_are_followed_by_hand() {
    let origin = Origin::start().await;
    let env = MediaEnv::allowing_localhost(Backend::Sqlite, &[])
        .await
        .expect("env");
    let ctx = graph_ctx("redirects");
    // Ten redirects are fine, eleven are not.
    let name = env
        .store(&origin.url("/chain/10"), &ctx, ForLocalProcessing)
        .await
        .unwrap();
    assert_eq!(env.read("redirects", &name), b"end of chain");
    let e = assert_code(
        env.store(&origin.url("/chain/11"), &ctx, ForLocalProcessing)
            .await,
        ErrorCode::UpstreamFailed,
    );
    assert!(e.message.contains("redirect"), "{e}");
    let hits = origin.hits();
    assert_code(
        env.store(&origin.url("/loop/0"), &ctx, ForLocalProcessing)
            .await,
        ErrorCode::UpstreamFailed,
    );
    assert_eq!(
        origin.hits() - hits,
        11,
        "the first request and ten redirects"
    );
    // A relative Location is resolved against the current URL.
    let to: String = url::form_urlencoded::byte_serialize(b"/img/photo.png").collect();
    assert_eq!(
        env.store(
            &origin.url(&format!("/redirect?to={to}")),
            &ctx,
            ForLocalProcessing
        )
        .await
        .unwrap(),
        "photo.png"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redirect_to_a_blocked_address_is_refused_before_connecting() {
    let allowed = Origin::start().await;
    let victim = Origin::start().await;
    let env = MediaEnv::allowing_localhost(Backend::Sqlite, &[])
        .await
        .expect("env");
    let ctx = graph_ctx("blocked-hop");
    for target in [
        victim.url_at("127.0.0.1", "/secret"),
        victim.url_at("[::1]", "/secret"),
        victim.url_at("0x7f000001", "/secret"),
        victim.url_at("[::ffff:127.0.0.1]", "/secret"),
        victim.url_at("0.0.0.0", "/secret"),
        "file:///etc/passwd".to_owned(),
    ] {
        let to: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        let hits = allowed.hits();
        assert_code(
            env.store(
                &allowed.url(&format!("/redirect?to={to}")),
                &ctx,
                ForLocalProcessing,
            )
            .await,
            ErrorCode::UrlNotAllowed,
        );
        assert_eq!(
            allowed.hits() - hits,
            1,
            "the allowed hop was made ({target})"
        );
    }
    assert_eq!(victim.hits(), 0, "the blocked target was never contacted");
    assert!(env.files("blocked-hop").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_never_leave_their_origin() {
    let a = Origin::start().await;
    let b = Origin::start().await;
    let env = MediaEnv::allowing_localhost(Backend::Sqlite, &[])
        .await
        .expect("env");
    let ctx = graph_ctx("creds");
    let basic = format!("Basic {}", b64(b"user:p@ss"));
    let with_creds =
        |o: &Origin, path: &str| format!("http://user:p%40ss@localhost:{}{path}", o.port);

    // Same origin: sent, also after a same-origin redirect; cookies are never sent.
    let name = env
        .store(&with_creds(&a, "/echo"), &ctx, ForLocalProcessing)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(env.read("creds", &name)).unwrap(),
        format!("authorization={:?} cookie=None", Some(&basic))
    );
    env.store(
        &with_creds(&a, "/redirect?to=%2Fecho"),
        &ctx,
        ForLocalProcessing,
    )
    .await
    .unwrap();
    let seen = a.seen();
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some(basic.as_str())));
    assert!(seen.iter().all(|s| s.cookie.is_none()), "{seen:?}");

    // Another origin (another port) gets neither.
    let to: String = url::form_urlencoded::byte_serialize(b.url("/echo").as_bytes()).collect();
    let name = env
        .store(
            &with_creds(&a, &format!("/redirect?to={to}")),
            &ctx,
            ForLocalProcessing,
        )
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(env.read("creds", &name)).unwrap(),
        "authorization=None cookie=None"
    );
    let seen_b = b.seen();
    assert_eq!(seen_b.len(), 1);
    assert!(seen_b[0].authorization.is_none() && seen_b[0].cookie.is_none());
    assert!(!name.contains("p@ss") && !name.contains("user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_bodies_are_cut_off() {
    let origin = Origin::start().await;
    let env = MediaEnv::allowing_localhost(Backend::Sqlite, &[("MAX_FILE_SIZE_MB", "1")])
        .await
        .expect("env");
    let ctx = graph_ctx("large");
    // With Content-Length: refused before the body is read; chunked: cut off while streaming.
    for path in ["/big", "/chunked/2048/1", "/chunked/1025/2"] {
        assert_code(
            env.store(&origin.url(path), &ctx, ForLocalProcessing).await,
            ErrorCode::FileTooLarge,
        );
    }
    assert!(env.files("large").is_empty(), "{:?}", env.files("large"));
    // Exactly the cap is fine.
    let name = env
        .store(&origin.url("/chunked/1024/3"), &ctx, ForLocalProcessing)
        .await
        .unwrap();
    assert_eq!(env.read("large", &name), noise(MIB, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_bodies_time_out() {
    let origin = Origin::start().await;
    let env = MediaEnv::allowing_localhost(Backend::Sqlite, &[("MEDIA_URL_TIMEOUT_S", "1")])
        .await
        .expect("env");
    let ctx = graph_ctx("slow");
    let started = Instant::now();
    let e = assert_code(
        env.store(&origin.url("/slow"), &ctx, ForLocalProcessing)
            .await,
        ErrorCode::UpstreamFailed,
    );
    assert!(e.message.contains("media_url_timeout_s"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(env.files("slow").is_empty(), "{:?}", env.files("slow"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_errors_are_upstream_failed() {
    let origin = Origin::start().await;
    let env = MediaEnv::allowing_localhost(Backend::Sqlite, &[])
        .await
        .expect("env");
    let ctx = graph_ctx("errors");
    for code in ["404", "500", "403", "304"] {
        let e = assert_code(
            env.store(
                &origin.url(&format!("/status/{code}")),
                &ctx,
                ForLocalProcessing,
            )
            .await,
            ErrorCode::UpstreamFailed,
        );
        assert!(e.message.contains(code), "{e}");
    }
    // https to a server that speaks plain HTTP: the TLS handshake fails.
    let https = format!("https://localhost:{}/img/photo.png", origin.port);
    assert_code(
        env.store(&https, &ctx, ForLocalProcessing).await,
        ErrorCode::UpstreamFailed,
    );
    // Nothing listens on this port any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_code(
        env.store(
            &format!("http://localhost:{port}/x"),
            &ctx,
            ForLocalProcessing,
        )
        .await,
        ErrorCode::UpstreamFailed,
    );
    assert!(env.files("errors").is_empty());
}

// ---------------------------------------------------------------------------------------------
// SSRF: without the allow-list, every loopback spelling is refused before any connection.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ssrf_corpus_is_refused_end_to_end() {
    let origin = Origin::start().await;
    let env = MediaEnv::new(Backend::Sqlite, &[]).await.expect("env");
    let ctx = graph_ctx("ssrf");
    for host in [
        "127.0.0.1",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "api.localhost",
        "[::1]",
        "0x7f000001",
        "2130706433",
        "127.1",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0.0.0.0",
    ] {
        for scheme in ["http", "https"] {
            let url = format!("{scheme}://{host}:{}/img/photo.png", origin.port);
            for format in ReturnFormat::ALL {
                let e = assert_code(
                    env.store(&url, &ctx, format).await,
                    ErrorCode::UrlNotAllowed,
                );
                assert!(e.message.contains("not a public address"), "{url}: {e}");
            }
        }
        let with_creds = format!("http://u:p@{host}:{}/", origin.port);
        assert_code(
            env.store(&with_creds, &ctx, ForLocalProcessing).await,
            ErrorCode::UrlNotAllowed,
        );
    }
    assert_eq!(origin.hits(), 0, "the origin was never contacted");
    assert!(env.files("ssrf").is_empty());
}

/// Addresses that are not on this machine: only the pure policy function sees them.
#[test]
fn the_address_policy_refuses_internal_ranges() {
    for refused in [
        "169.254.169.254",
        "10.0.0.1",
        "100.64.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "fc00::1",
        "fe80::1",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::",
    ] {
        let ip: IpAddr = refused.parse().unwrap();
        assert!(!media::is_allowed(ip), "{refused}");
    }
    for allowed in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
        let ip: IpAddr = allowed.parse().unwrap();
        assert!(media::is_allowed(ip), "{allowed}");
    }
}

// ---------------------------------------------------------------------------------------------
// Local paths and the execution-folder escape corpus.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_paths_stay_inside_the_execution_folder() {
    let env = MediaEnv::new(Backend::Sqlite, &[]).await.expect("env");
    let outside = tempfile::tempdir().unwrap();
    let outside_file = outside.path().join("outside.txt");
    std::fs::write(&outside_file, b"outside").unwrap();
    let abc = env.folder("abc");
    let abc2 = env.folder("abc2");
    std::fs::create_dir_all(abc.join("nested/dir")).unwrap();
    std::fs::create_dir_all(abc.join("sub")).unwrap();
    std::fs::create_dir_all(&abc2).unwrap();
    std::fs::write(abc.join("a.txt"), b"in a").unwrap();
    std::fs::write(abc.join("nested/dir/b.csv"), b"x,y").unwrap();
    std::fs::write(abc2.join("secret.txt"), b"sibling secret").unwrap();
    let link =
        |target: &Path, name: &str| std::os::unix::fs::symlink(target, abc.join(name)).unwrap();
    link(Path::new("a.txt"), "inside-link");
    link(&outside_file, "out-link");
    link(Path::new("/etc/passwd"), "passwd-link");
    link(Path::new("../abc2/secret.txt"), "sibling-link");
    link(Path::new("../abc2"), "sibling-dir");
    link(outside.path(), "outside-dir");

    let ctx = graph_ctx("abc");
    let ok = |raw: &'static str, expected: &'static str| {
        let env = &env;
        let ctx = &ctx;
        async move {
            assert_eq!(
                env.store(raw, ctx, ForLocalProcessing).await.unwrap(),
                expected,
                "{raw}"
            );
        }
    };
    ok("a.txt", "a.txt").await;
    ok("./a.txt", "a.txt").await;
    ok("nested/dir/b.csv", "nested/dir/b.csv").await;
    ok("nested//dir/./b.csv", "nested/dir/b.csv").await;
    ok("inside-link", "a.txt").await;
    assert_eq!(
        env.store("nested/dir/b.csv", &ctx, ForExternalApi)
            .await
            .unwrap(),
        format!("data:text/csv;base64,{}", b64(b"x,y"))
    );

    for escape in [
        "../x",
        "../abc2/secret.txt",
        "/etc/passwd",
        "/tmp",
        "nested/../../abc2/secret.txt",
        "nested/../a.txt",
        "out-link",
        "passwd-link",
        "sibling-link",
        "sibling-dir/secret.txt",
        "outside-dir/outside.txt",
        "sub",
        "nested",
        ".",
    ] {
        for format in ReturnFormat::ALL {
            assert_code(
                env.store(escape, &ctx, format).await,
                ErrorCode::InvalidPath,
            );
        }
    }
    for missing in ["missing.txt", "nested/missing.csv", "a.txt/x"] {
        assert_code(
            env.store(missing, &ctx, ForLocalProcessing).await,
            ErrorCode::NotFound,
        );
    }
    // No folder yet for this execution.
    assert_code(
        env.store("a.txt", &graph_ctx("never-made"), ForLocalProcessing)
            .await,
        ErrorCode::NotFound,
    );
    // An execution folder that is itself a symlink is refused, and cleaning removes only the link.
    std::os::unix::fs::symlink(&abc2, env.folder("linked")).unwrap();
    assert_code(
        env.store("secret.txt", &graph_ctx("linked"), ForLocalProcessing)
            .await,
        ErrorCode::InvalidPath,
    );
    assert_code(
        env.store(
            &data_uri("text/plain", b"x"),
            &graph_ctx("linked"),
            ForLocalProcessing,
        )
        .await,
        ErrorCode::InvalidPath,
    );
    clean_exec_files(env.satchel(), "linked").await.unwrap();
    assert!(std::fs::symlink_metadata(env.folder("linked")).is_err());

    // Cleaning: bad ids are refused and touch nothing; the sibling sharing the prefix survives.
    for bad in [
        "../..",
        "..",
        "abc/..",
        "abc/../abc2",
        "",
        "/",
        "abc2/../abc",
    ] {
        assert_code(
            clean_exec_files(env.satchel(), bad)
                .await
                .map(|_| String::new()),
            ErrorCode::InvalidInput,
        );
    }
    clean_exec_files(env.satchel(), "abc").await.unwrap();
    assert!(!abc.exists());
    assert_eq!(
        std::fs::read(abc2.join("secret.txt")).unwrap(),
        b"sibling secret"
    );
    assert_eq!(std::fs::read(&outside_file).unwrap(), b"outside");
    assert!(Path::new("/etc/passwd").exists());
    clean_exec_files(env.satchel(), "abc").await.unwrap();
    clean_exec_files(env.satchel(), "never-made").await.unwrap();
    assert_eq!(
        media::exec_folder_path(env.satchel(), "abc2").unwrap(),
        abc2
    );
}

// ---------------------------------------------------------------------------------------------
// The folder limit under concurrency.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_respect_the_folder_limit() {
    let origin = Origin::start().await;
    let env = MediaEnv::allowing_localhost(Backend::Sqlite, &[("EXEC_DIR_MAX_MB", "1")])
        .await
        .expect("env");
    let cap = MIB as u64;

    // Sizes known up front (data URIs): exactly three of 300 KiB fit in 1 MiB.
    let uris: Vec<String> = (0..8)
        .map(|i| data_uri("application/octet-stream", &noise(300 * KIB, 100 + i)))
        .collect();
    let ctx = graph_ctx("limit");
    let results =
        futures::future::join_all(uris.iter().map(|u| env.store(u, &ctx, ForLocalProcessing)))
            .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 3, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code, ErrorCode::QuotaExceeded, "{r}");
        assert!(matches!(r.detail, ErrorDetail::Quota { limit_bytes, .. } if limit_bytes == cap));
    }
    let files = env.files("limit");
    assert_eq!(files.len(), 3, "no staged file left: {files:?}");
    assert!(folder_bytes(&files) <= cap);

    // Sizes unknown (chunked bodies): reservations grow as bytes arrive.
    let ctx = graph_ctx("limit-chunked");
    let urls: Vec<String> = (0..6)
        .map(|i| origin.url(&format!("/chunked/300/{}", 200 + i)))
        .collect();
    let results =
        futures::future::join_all(urls.iter().map(|u| env.store(u, &ctx, ForLocalProcessing)))
            .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!((1..=3).contains(&ok), "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.code == ErrorCode::QuotaExceeded));
    let files = env.files("limit-chunked");
    assert_eq!(files.len(), ok, "{files:?}");
    assert!(folder_bytes(&files) <= cap);

    // Files a block wrote itself count too; what does not fit is refused, what fits is stored.
    let ctx = graph_ctx("limit-local");
    std::fs::create_dir_all(env.folder("limit-local")).unwrap();
    std::fs::write(
        env.folder("limit-local").join("own.bin"),
        noise(900 * KIB, 7),
    )
    .unwrap();
    assert_code(
        env.store(
            &data_uri("text/plain", &noise(200 * KIB, 8)),
            &ctx,
            ForLocalProcessing,
        )
        .await,
        ErrorCode::QuotaExceeded,
    );
    env.store(
        &data_uri("text/plain", &noise(100 * KIB, 9)),
        &ctx,
        ForLocalProcessing,
    )
    .await
    .unwrap();
    assert!(folder_bytes(&env.files("limit-local")) <= cap);
}

// ---------------------------------------------------------------------------------------------
// Workspace inputs and block output, on both catalogs.

/// Every input type × every return format.
async fn every_input_in_every_format(backend: Backend) {
    let Some(env) = MediaEnv::allowing_localhost(backend, &[]).await else {
        return;
    };
    let origin = Origin::start().await;
    let alice = env.workspace("alice", Some(SESSION)).await;
    let doc = alice
        .write_file(&b"workspace doc"[..], "doc.txt", WriteOptions::default())
        .await
        .unwrap()
        .file;
    assert_eq!(doc.path, format!("/sessions/{SESSION}/doc.txt"));
    let exec = "every";
    std::fs::create_dir_all(env.folder(exec).join("in")).unwrap();
    std::fs::write(env.folder(exec).join("in/local.json"), b"{\"a\":1}").unwrap();

    let chat = ExecutionContext::new(exec, "alice")
        .with_workspace(alice.workspace_id())
        .with_session(SESSION);
    let graph = ExecutionContext::new(exec, "alice").with_workspace(alice.workspace_id());
    let bare = ExecutionContext::new(exec, "alice");

    let by_id = format!("workspace://{}", doc.id);
    let by_path = "workspace:///doc.txt".to_owned();
    // (input, content, mime, whether it is a workspace reference)
    let cases: Vec<(String, Vec<u8>, &str, bool)> = vec![
        (data_uri("image/png", PNG), PNG.to_vec(), "image/png", false),
        (
            origin.url("/img/photo.png"),
            PNG.to_vec(),
            "image/png",
            false,
        ),
        (by_id.clone(), b"workspace doc".to_vec(), "text/plain", true),
        (
            format!("{by_id}#image/png"),
            b"workspace doc".to_vec(),
            "text/plain",
            true,
        ),
        (
            by_path.clone(),
            b"workspace doc".to_vec(),
            "text/plain",
            true,
        ),
        (
            "in/local.json".to_owned(),
            b"{\"a\":1}".to_vec(),
            "application/json",
            false,
        ),
    ];
    for (input, content, mime, from_workspace) in &cases {
        let ctxs: &[&ExecutionContext] = if *from_workspace {
            &[&chat]
        } else {
            &[&chat, &graph, &bare]
        };
        for ctx in ctxs {
            // for_local_processing: a file in the folder with the content.
            let rel = env.store(input, ctx, ForLocalProcessing).await.unwrap();
            assert_eq!(&env.read(exec, &rel), content, "{input} → {rel}");

            // for_external_api: the data URI with the content's own type.
            let uri = env.store(input, ctx, ForExternalApi).await.unwrap();
            assert_eq!(uri, data_uri(mime, content), "{input}");

            // for_block_output.
            let out = env.store(input, ctx, ForBlockOutput).await.unwrap();
            if *from_workspace {
                let reference = input.split('#').next().unwrap();
                assert_eq!(out, format!("{reference}#{mime}"), "{input}");
            } else if ctx.session_id.is_some() {
                let (reference, fragment) = out.split_once('#').expect("a #mime fragment");
                assert_eq!(fragment, *mime, "{input}");
                let id = Uuid::parse_str(reference.strip_prefix("workspace://").unwrap()).unwrap();
                let saved = alice.get_file_info(id).await.unwrap();
                assert!(
                    saved.path.starts_with(&format!("/sessions/{SESSION}/")),
                    "{}",
                    saved.path
                );
                assert_eq!(saved.mime_type, *mime);
                assert_eq!(&alice.read_file_by_id(id).await.unwrap()[..], &content[..]);
                // The saved reference is itself a valid input.
                assert_eq!(
                    env.store(&out, ctx, ForExternalApi).await.unwrap(),
                    data_uri(mime, content)
                );
            } else {
                assert_eq!(out, data_uri(mime, content), "{input} in a graph run");
            }
        }
    }
}

/// Saved block output goes to `/sessions/{S}/{name}`, renamed on conflict.
async fn block_output_renames_on_conflict(backend: Backend) {
    let Some(env) = MediaEnv::new(backend, &[]).await else {
        return;
    };
    let alice = env.workspace("alice", Some(SESSION)).await;
    let exec = "renames";
    std::fs::create_dir_all(env.folder(exec)).unwrap();
    std::fs::write(env.folder(exec).join("report.txt"), b"v1").unwrap();
    let ctx = ExecutionContext::new(exec, "alice")
        .with_workspace(alice.workspace_id())
        .with_session(SESSION);
    let first = env.store("report.txt", &ctx, ForBlockOutput).await.unwrap();
    let second = env.store("report.txt", &ctx, ForBlockOutput).await.unwrap();
    assert_ne!(first, second);
    let path_of = |out: &str| {
        let id = out
            .strip_prefix("workspace://")
            .and_then(|s| s.split('#').next())
            .and_then(|s| Uuid::parse_str(s).ok())
            .expect("a workspace reference");
        let alice = alice.clone();
        async move { alice.get_file_info(id).await.unwrap().path }
    };
    assert_eq!(
        path_of(&first).await,
        format!("/sessions/{SESSION}/report.txt")
    );
    assert_eq!(
        path_of(&second).await,
        format!("/sessions/{SESSION}/report (1).txt")
    );
    assert!(first.ends_with("#text/plain"));
}

/// `workspace://` reads only the caller's own workspace.
async fn workspace_references_stay_in_the_callers_workspace(backend: Backend) {
    let Some(env) = MediaEnv::new(backend, &[]).await else {
        return;
    };
    let alice = env.workspace("alice", None).await;
    let bob = env.workspace("bob", None).await;
    let secret = alice
        .write_file(&b"alice only"[..], "secret.txt", WriteOptions::default())
        .await
        .unwrap()
        .file;
    let exec = "cross";
    let bob_ctx = ExecutionContext::new(exec, "bob").with_workspace(bob.workspace_id());
    let by_id = format!("workspace://{}", secret.id);
    for format in ReturnFormat::ALL {
        assert_code(
            env.store(&by_id, &bob_ctx, format).await,
            ErrorCode::NotFound,
        );
        assert_code(
            env.store("workspace:///secret.txt", &bob_ctx, format).await,
            ErrorCode::NotFound,
        );
    }
    // Naming alice's workspace does not help bob.
    let forged = ExecutionContext::new(exec, "bob").with_workspace(alice.workspace_id());
    for format in ReturnFormat::ALL {
        assert_code(
            env.store(&by_id, &forged, format).await,
            ErrorCode::NotFound,
        );
    }
    // Block output into a workspace that is not the caller's: refused before any work.
    let chat = forged.clone().with_session(SESSION);
    assert_code(
        env.store(&data_uri("text/plain", b"x"), &chat, ForBlockOutput)
            .await,
        ErrorCode::NotFound,
    );
    // A workspace id that is nobody's.
    let nobody = ExecutionContext::new(exec, "alice").with_workspace(Uuid::new_v4());
    assert_code(
        env.store(&by_id, &nobody, ForExternalApi).await,
        ErrorCode::NotFound,
    );
    // No workspace_id at all.
    let e = assert_code(
        env.store(
            &by_id,
            &ExecutionContext::new(exec, "alice"),
            ForLocalProcessing,
        )
        .await,
        ErrorCode::InvalidInput,
    );
    assert!(e.message.contains("workspace_id"), "{e}");
    // Unknown or malformed references.
    let alice_ctx = ExecutionContext::new(exec, "alice").with_workspace(alice.workspace_id());
    for (bad, code) in [
        (
            format!("workspace://{}", Uuid::new_v4()),
            ErrorCode::NotFound,
        ),
        ("workspace:///nope.txt".to_owned(), ErrorCode::NotFound),
        ("workspace://nope".to_owned(), ErrorCode::InvalidInput),
        (
            "workspace:///a/../secret.txt".to_owned(),
            ErrorCode::InvalidPath,
        ),
    ] {
        assert_code(env.store(&bad, &alice_ctx, ForLocalProcessing).await, code);
    }
    // A deleted file is gone.
    alice.delete_file(secret.id).await.unwrap();
    assert_code(
        env.store(&by_id, &alice_ctx, ForLocalProcessing).await,
        ErrorCode::NotFound,
    );
    assert!(env.files(exec).is_empty(), "{:?}", env.files(exec));
}

/// A store that keeps blobs on the local disk under `gcs://test-bucket/workspaces/…` keys, so
/// cloud-path inputs are exercised through the real catalog lookup and read path.
struct BucketAlias(LocalStore);

const BUCKET_PREFIX: &str = "gcs://test-bucket/workspaces/";

fn to_local(storage_path: &str) -> String {
    match storage_path.strip_prefix(BUCKET_PREFIX) {
        Some(rest) => format!("local://{rest}"),
        None => format!("not-this-bucket:{storage_path}"),
    }
}

#[async_trait]
impl BlobStore for BucketAlias {
    fn backend(&self) -> &'static str {
        "gcs"
    }
    fn storage_path(&self, workspace_id: Uuid, file_id: Uuid, storage_name: &str) -> String {
        format!("{BUCKET_PREFIX}{workspace_id}/{file_id}/{storage_name}")
    }
    async fn create(&self, storage_path: &str) -> StorageResult<Box<dyn BlobWriter>> {
        self.0.create(&to_local(storage_path)).await
    }
    async fn open(
        &self,
        storage_path: &str,
        range: Option<ByteRange>,
    ) -> StorageResult<BlobStream> {
        self.0.open(&to_local(storage_path), range).await
    }
    async fn size(&self, storage_path: &str) -> StorageResult<Option<u64>> {
        self.0.size(&to_local(storage_path)).await
    }
    async fn delete(&self, storage_path: &str) -> StorageResult<()> {
        self.0.delete(&to_local(storage_path)).await
    }
    async fn list(&self) -> StorageResult<Vec<BlobEntry>> {
        self.0.list().await
    }
    async fn sweep_staging(
        &self,
        older_than: SystemTime,
        dry_run: bool,
    ) -> StorageResult<Vec<String>> {
        self.0.sweep_staging(older_than, dry_run).await
    }
    async fn ping(&self) -> StorageResult<()> {
        self.0.ping().await
    }
}

/// Cloud paths: only the storage path of one of the caller's live files.
async fn cloud_paths_name_only_the_callers_files(backend: Backend) {
    let Some(mut env) = MediaEnv::new(backend, &[]).await else {
        return;
    };
    let store = LocalStore::open(&env.env.storage_dir()).await.unwrap();
    let base = env.env.satchel.clone();
    env.env.satchel = Satchel::from_parts(
        base.config().clone(),
        base.catalog().clone(),
        Arc::new(BucketAlias(store)),
        base.scanner().clone(),
    );
    let alice = env.workspace("alice", None).await;
    let bob = env.workspace("bob", None).await;
    let file = alice
        .write_file(PNG, "pic.png", WriteOptions::default())
        .await
        .unwrap()
        .file;
    assert!(
        file.storage_path.starts_with("gcs://test-bucket/"),
        "{}",
        file.storage_path
    );
    let exec = "cloud";
    let ctx = ExecutionContext::new(exec, "alice");
    let key = file.storage_path.strip_prefix("gcs://").unwrap();

    for spelling in [
        file.storage_path.clone(),
        format!("gs://{key}"),
        format!("GCS://{key}"),
        format!("Gs://{key}"),
    ] {
        let rel = env
            .store(&spelling, &ctx, ForLocalProcessing)
            .await
            .unwrap();
        assert_eq!(rel, "pic.png", "{spelling}");
        assert_eq!(env.read(exec, &rel), PNG);
        assert_eq!(
            env.store(&spelling, &ctx, ForExternalApi).await.unwrap(),
            data_uri("image/png", PNG)
        );
    }
    // As block output: its own workspace reference when the context names the workspace.
    let with_ws = ctx.clone().with_workspace(alice.workspace_id());
    assert_eq!(
        env.store(&file.storage_path, &with_ws, ForBlockOutput)
            .await
            .unwrap(),
        format!("workspace://{}#image/png", file.id)
    );
    assert_eq!(
        env.store(&file.storage_path, &ctx, ForBlockOutput)
            .await
            .unwrap(),
        data_uri("image/png", PNG)
    );

    // Bob, other buckets and prefixes, other schemes for the same key, a deleted file.
    let bob_ctx = ExecutionContext::new(exec, "bob").with_workspace(bob.workspace_id());
    assert_code(
        env.store(&file.storage_path, &bob_ctx, ForLocalProcessing)
            .await,
        ErrorCode::NotFound,
    );
    for other in [
        format!("s3://{key}"),
        format!(
            "gcs://other-bucket/workspaces/{}",
            key.split_once("/workspaces/").unwrap().1
        ),
        "gcs://test-bucket/workspaces/".to_owned(),
        "gs://test-bucket/etc/passwd".to_owned(),
        format!("{}/../x", file.storage_path),
    ] {
        assert_code(
            env.store(&other, &ctx, ForLocalProcessing).await,
            ErrorCode::NotFound,
        );
    }
    alice.delete_file(file.id).await.unwrap();
    assert_code(
        env.store(&file.storage_path, &ctx, ForLocalProcessing)
            .await,
        ErrorCode::NotFound,
    );
}

on_both_catalogs!(
    every_input_in_every_format,
    block_output_renames_on_conflict,
    workspace_references_stay_in_the_callers_workspace,
    cloud_paths_name_only_the_callers_files,
);

// ---------------------------------------------------------------------------------------------
// Scanning: EICAR through every kind of input that is written, with the real clamd.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eicar_is_refused_and_nothing_is_kept() {
    let Some(env) = scanning_env(&[("MEDIA_URL_ALLOW_HOSTS", "localhost")]).await else {
        return;
    };
    let origin = Origin::start().await;
    let ctx = graph_ctx("eicar");
    for format in ReturnFormat::ALL {
        for input in [data_uri("text/plain", &eicar()), origin.url("/eicar")] {
            let e = assert_code(
                env.store(&input, &ctx, format).await,
                ErrorCode::VirusDetected,
            );
            match &e.detail {
                ErrorDetail::Threat(t) => assert!(t.contains("Eicar"), "{t}"),
                other => panic!("no threat name: {other:?}"),
            }
        }
    }
    assert!(env.files("eicar").is_empty(), "{:?}", env.files("eicar"));
    // Clean content goes through the same scanner.
    let name = env
        .store(&data_uri("text/plain", b"clean"), &ctx, ForLocalProcessing)
        .await
        .unwrap();
    assert_eq!(env.read("eicar", &name), b"clean");
}

// ---------------------------------------------------------------------------------------------
// Misc.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_file_is_not_copied_and_the_folder_is_cleaned() {
    let env = MediaEnv::new(Backend::Sqlite, &[]).await.expect("env");
    let ctx = graph_ctx("clean-me");
    let name = env
        .store(&data_uri("image/png", PNG), &ctx, ForLocalProcessing)
        .await
        .unwrap();
    // Feeding the result back in refers to the same file; nothing new is written.
    assert_eq!(
        env.store(&name, &ctx, ForLocalProcessing).await.unwrap(),
        name
    );
    assert_eq!(
        env.store(&name, &ctx, ForExternalApi).await.unwrap(),
        data_uri("image/png", PNG)
    );
    assert_eq!(env.files("clean-me").len(), 1);
    clean_exec_files(env.satchel(), "clean-me").await.unwrap();
    assert!(!env.folder("clean-me").exists());
    assert_code(
        env.store(&name, &ctx, ForLocalProcessing).await,
        ErrorCode::NotFound,
    );
}
