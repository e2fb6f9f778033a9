//! `spawn_app()`: the real server on 127.0.0.1:0 with a fresh temp dir (data, storage, SQLite)
//! or a fresh PostgreSQL database (`DATABASE_URL`; without it the PostgreSQL variants fail
//! unless `SATCHEL_SKIP_EXTERNAL=1`). Scanning is off unless a test turns it on.
#![allow(dead_code)]

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use satchel::signing::Secrets;
use satchel::{Config, Satchel};
use satchel_server::App;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn skip_external() -> bool {
    std::env::var("SATCHEL_SKIP_EXTERNAL").is_ok_and(|v| v == "1")
}

/// Whether the PostgreSQL variant must be skipped (no `DATABASE_URL`, skipping allowed).
pub fn skip_postgres() -> bool {
    if std::env::var("DATABASE_URL").is_ok() {
        return false;
    }
    assert!(
        skip_external(),
        "DATABASE_URL is not set: start PostgreSQL (source /tmp/svc/env) or set SATCHEL_SKIP_EXTERNAL=1"
    );
    eprintln!("skipped: DATABASE_URL is not set and SATCHEL_SKIP_EXTERNAL=1");
    true
}

/// A fresh, empty PostgreSQL database on the server of `DATABASE_URL`: (its URL, its name).
pub async fn fresh_postgres_database() -> (String, String) {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to DATABASE_URL");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let (without_query, query) = match base.split_once('?') {
        Some((a, q)) => (a.to_owned(), format!("?{q}")),
        None => (base.clone(), String::new()),
    };
    let server = without_query
        .rsplit_once('/')
        .map(|(s, _)| s.to_owned())
        .expect("DATABASE_URL has a database name");
    (format!("{server}/{name}{query}"), name)
}

/// Drops a test database (from a destructor: on a thread of its own).
fn drop_postgres_database(name: String) {
    let Ok(base) = std::env::var("DATABASE_URL") else {
        return;
    };
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&base).await.ok()?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .ok()?;
            conn.close().await.ok()
        })
    });
    let _ = dropped.join();
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub config: Config,
    pub secrets: Secrets,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    postgres_database: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts the server with extra configuration (upper-cased keys, as in the environment).
pub async fn spawn_app_with(backend: Backend, vars: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("APP_DATA_DIR".into(), dir.path().display().to_string());
    env.insert("CLAMAV_SERVICE_ENABLED".into(), "false".into());
    env.insert("BIND_ADDRESS".into(), addr.to_string());
    env.insert("GC_INTERVAL_S".into(), "0".into());
    let mut postgres_database = None;
    if backend == Backend::Postgres {
        let (url, name) = fresh_postgres_database().await;
        env.insert("DATABASE_URL".into(), url);
        postgres_database = Some(name);
    }
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    let config = Config::from_sources(None, &env).expect("config");
    let satchel = Satchel::open(config.clone()).await.expect("open satchel");
    let app = App::new(satchel).await.expect("app");
    let secrets = app.secrets().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(satchel_server::serve(app, listener, async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client"),
        config,
        secrets,
        backend,
        dir,
        postgres_database,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    /// A bearer token for `user`, minted with the server's secret.
    pub fn token(&self, user: &str) -> String {
        satchel_server::auth::mint_token_for_audience(
            &self.secrets,
            user,
            Duration::from_secs(600),
            self.config.jwt_audience.as_deref(),
        )
        .expect("token")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request as `user`.
    pub fn req(&self, user: &str, method: Method, path: &str) -> RequestBuilder {
        self.anon(method, path).bearer_auth(self.token(user))
    }

    pub async fn get(&self, user: &str, path: &str) -> Response {
        self.req(user, Method::GET, path)
            .send()
            .await
            .expect("send")
    }

    pub async fn get_json(&self, user: &str, path: &str) -> Value {
        let r = self.get(user, path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.expect("json")
    }

    /// Raw upload: `POST /v1/files?{query}` with `content`.
    pub async fn upload(
        &self,
        user: &str,
        query: &str,
        content: impl Into<reqwest::Body>,
    ) -> Response {
        self.req(user, Method::POST, &format!("/v1/files?{query}"))
            .body(content)
            .send()
            .await
            .expect("send")
    }

    /// Uploads and expects 201; returns the FileInfo.
    pub async fn create(&self, user: &str, query: &str, content: &'static [u8]) -> Value {
        let r = self.upload(user, query, content).await;
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, StatusCode::CREATED, "upload {query}: {body}");
        body
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.config.workspace_storage_dir.clone()
    }

    pub fn staged_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.storage_dir().join(".staging"), &mut out);
        out
    }

    /// Committed blobs on disk.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.storage_dir(), &mut out);
        out.retain(|p| !p.components().any(|c| c.as_os_str() == ".staging"));
        out
    }

    /// Stops accepting connections and waits for in-flight requests.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(handle) => handle.await.expect("server task"),
            None => Ok(()),
        }
    }

    /// Signals shutdown without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(name) = self.postgres_database.take() {
            drop_postgres_database(name);
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
}

/// Status, error code and body of an error response.
pub async fn error_of(r: Response) -> (StatusCode, String, Value) {
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.expect("body");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("error body is not JSON ({status}, {content_type}): {text:?}"));
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.code in {body}"))
        .to_owned();
    assert!(body["error"]["message"].is_string(), "{body}");
    (status, code, body)
}

/// Asserts an error response's status and code; returns the body.
pub async fn expect_error(r: Response, status: u16, code: &str) -> Value {
    let (s, c, body) = error_of(r).await;
    assert_eq!((s.as_u16(), c.as_str()), (status, code), "{body}");
    body
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// Runs each named `async fn(Backend)` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if skip_postgres() {
                        return;
                    }
                    super::$name(Backend::Postgres).await
                }
            }
        )*
    };
}
