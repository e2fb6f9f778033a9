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
        let store = Arc::new(
            satchel::storage::LocalStore::open(&config.workspace_storage_dir)
                .await
                .expect("store"),
        );
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
