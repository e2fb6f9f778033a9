//! Test harness: a fresh Satchel per test on SQLite or on a fresh PostgreSQL database, with a
//! temp storage dir. PostgreSQL comes from `DATABASE_URL` (the CI script starts one); without
//! it the PostgreSQL variants fail, unless `SATCHEL_SKIP_EXTERNAL=1` says to skip them.
#![allow(dead_code)]

use satchel::catalog::Catalog;
use satchel::scanner::{NoScan, Scanner};
use satchel::{Config, Satchel};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestEnv {
    pub satchel: Satchel,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
}

pub fn skip_external() -> bool {
    std::env::var("SATCHEL_SKIP_EXTERNAL").is_ok_and(|v| v == "1")
}

/// A URL of a fresh, empty PostgreSQL database on the server of `DATABASE_URL`.
pub async fn fresh_postgres_url() -> Option<String> {
    let Ok(base) = std::env::var("DATABASE_URL") else {
        assert!(
            skip_external(),
            "DATABASE_URL is not set: start PostgreSQL (scripts/services.sh start) or set SATCHEL_SKIP_EXTERNAL=1"
        );
        return None;
    };
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to DATABASE_URL");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (without_query, query) = match base.split_once('?') {
        Some((a, q)) => (a.to_owned(), format!("?{q}")),
        None => (base.clone(), String::new()),
    };
    let server = without_query
        .rsplit_once('/')
        .map(|(s, _)| s.to_owned())
        .expect("DATABASE_URL has a database name");
    Some(format!("{server}/{name}{query}"))
}

impl TestEnv {
    /// `None` when the backend is unavailable and skipping is allowed.
    pub async fn new(backend: Backend, vars: &[(&str, &str)]) -> Option<TestEnv> {
        Self::with_scanner(backend, vars, Arc::new(NoScan)).await
    }

    pub async fn with_scanner(
        backend: Backend,
        vars: &[(&str, &str)],
        scanner: Arc<dyn Scanner>,
    ) -> Option<TestEnv> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("APP_DATA_DIR".into(), dir.path().display().to_string());
        if backend == Backend::Postgres {
            env.insert("DATABASE_URL".into(), fresh_postgres_url().await?);
        }
        let config = Config::from_sources(None, &env).expect("config");
        let catalog: Arc<dyn Catalog> = satchel::catalog::connect(&config.database_url)
            .await
            .expect("catalog");
        let config = with_selected_storage(config).await;
        let store = satchel::storage::open_from_config(&config)
            .await
            .expect("store");
        let satchel = Satchel::from_parts(config, catalog, store, scanner);
        Some(TestEnv {
            satchel,
            dir,
            backend,
        })
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.satchel.config().workspace_storage_dir.clone()
    }

    /// Committed blob files on disk (staging excluded).
    pub fn blob_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.storage_dir(), &mut out);
        out.retain(|p| !p.components().any(|c| c.as_os_str() == ".staging"));
        out
    }

    pub fn staged_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.storage_dir().join(".staging"), &mut out);
        out
    }

    /// Every file under the temp dir, for "nothing written outside the storage dir" checks.
    pub fn all_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
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

/// Runs a test body on both catalogs.
#[macro_export]
macro_rules! on_both_catalogs {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$name(Backend::Postgres).await
                }
            }
        )*
    };
}

// --- storage backends --------------------------------------------------------------------------
// The same bodies run on the local disk (default) and, inside `with_storage`, on GCS
// (fake-gcs-server) or S3 (moto): CI sources `scripts/services.sh`'s env file, which names the
// emulators (GCS_ENDPOINT, GCS_CREDENTIALS_FILE, S3_ENDPOINT, AWS_*). Without them the cloud
// variants fail, unless `SATCHEL_SKIP_EXTERNAL=1` says to skip them. Every test gets a fresh
// bucket, so listings (gc, fsck, blob counts) see only its own blobs.

/// Which blob store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Local,
    Gcs,
    S3,
}

tokio::task_local! {
    static STORAGE: Storage;
}

/// Runs `body` with every `TestEnv` it creates on `storage`.
pub async fn with_storage<F: std::future::Future>(storage: Storage, body: F) -> F::Output {
    STORAGE.scope(storage, body).await
}

/// The storage selected by `with_storage` (local outside it).
pub fn selected_storage() -> Storage {
    STORAGE.try_with(|s| *s).unwrap_or(Storage::Local)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether the emulator for `storage` is configured; fails the test if it is not, unless
/// `SATCHEL_SKIP_EXTERNAL=1` (then `false`: skip).
pub fn storage_available(storage: Storage) -> bool {
    let needed: &[&str] = match storage {
        Storage::Local => return true,
        Storage::Gcs => &["GCS_ENDPOINT", "GCS_CREDENTIALS_FILE"],
        Storage::S3 => &["S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    };
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|v| env_var(v).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        skip_external(),
        "{missing:?} not set: start the emulators (scripts/services.sh start; source $SVC_DIR/env) \
         or set SATCHEL_SKIP_EXTERNAL=1"
    );
    false
}

/// The emulator's base URL (`http://127.0.0.1:port`).
pub fn emulator_endpoint(storage: Storage) -> String {
    let var = match storage {
        Storage::Gcs => "GCS_ENDPOINT",
        Storage::S3 => "S3_ENDPOINT",
        Storage::Local => panic!("the local store has no endpoint"),
    };
    env_var(var)
        .unwrap_or_else(|| panic!("{var} is not set"))
        .trim_end_matches('/')
        .to_owned()
}

/// Creates an empty bucket on the emulator at `endpoint`.
pub async fn create_bucket_at(storage: Storage, endpoint: &str, bucket: &str) {
    let client = reqwest::Client::new();
    let response = match storage {
        Storage::Gcs => {
            client
                .post(format!("{endpoint}/storage/v1/b"))
                .header("content-type", "application/json")
                .body(format!("{{\"name\":\"{bucket}\"}}"))
                .send()
                .await
        }
        // moto checks no signature; path-style addressing.
        Storage::S3 => client.put(format!("{endpoint}/{bucket}")).send().await,
        Storage::Local => return,
    }
    .expect("reach the emulator");
    assert!(
        response.status().is_success(),
        "creating bucket {bucket}: {}",
        response.status()
    );
}

/// A fresh, empty bucket on the emulator for `storage`.
pub async fn fresh_bucket(storage: Storage) -> String {
    let bucket = format!("t-{}", uuid::Uuid::new_v4().simple());
    create_bucket_at(storage, &emulator_endpoint(storage), &bucket).await;
    bucket
}

/// Points `config` at a fresh bucket of `storage` on its emulator (unchanged for local).
pub async fn configure_storage(mut config: Config, storage: Storage) -> Config {
    match storage {
        Storage::Local => {}
        Storage::Gcs => {
            config.media_gcs_bucket_name = Some(fresh_bucket(storage).await);
            config.gcs_endpoint = Some(emulator_endpoint(storage));
            config.gcs_credentials_file = env_var("GCS_CREDENTIALS_FILE").map(PathBuf::from);
        }
        Storage::S3 => {
            config.media_s3_bucket_name = Some(fresh_bucket(storage).await);
            config.s3_endpoint = Some(emulator_endpoint(storage));
            config.s3_region = Some(env_var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()));
            config.s3_force_path_style = true;
        }
    }
    config
}

/// The configuration with the storage `with_storage` selected (a fresh bucket for cloud).
async fn with_selected_storage(config: Config) -> Config {
    configure_storage(config, selected_storage()).await
}

impl TestEnv {
    /// Committed blobs, as the store lists them (what `gc` and `fsck` see).
    pub async fn blob_count(&self) -> usize {
        self.satchel.store().list().await.expect("list blobs").len()
    }

    /// Uploads begun and not finished or cleaned up: staged files on the local disk; for an
    /// object store, writers still open plus any leftovers it can see (it stages nothing
    /// where a listing could: see storage/object.rs).
    pub async fn staged_uploads(&self) -> usize {
        let store = self.satchel.store();
        let far_future = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
        let leftovers = store
            .sweep_staging(far_future, true)
            .await
            .expect("list staging")
            .len();
        if store.backend() == "local" {
            leftovers
        } else {
            leftovers + store.uploads_in_flight()
        }
    }
}

/// Runs selected behaviour bodies (`async fn(Backend)`) on SQLite with GCS and with S3.
#[macro_export]
macro_rules! on_cloud_stores {
    ($($name:ident),* $(,)?) => {
        mod cloud {
            $(
                mod $name {
                    use super::super::*;
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn gcs() {
                        if common::storage_available(common::Storage::Gcs) {
                            common::with_storage(common::Storage::Gcs, super::super::$name(Backend::Sqlite)).await
                        }
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn s3() {
                        if common::storage_available(common::Storage::S3) {
                            common::with_storage(common::Storage::S3, super::super::$name(Backend::Sqlite)).await
                        }
                    }
                }
            )*
        }
    };
}
