//! Scale benchmark (not a test): a workspace of `SCALE_FILES` (default 1,000,000) bulk-loaded
//! records, then p50/p99 of listing, count and lookup calls, measured at the library and at the
//! HTTP layer (the real router served on 127.0.0.1, a real HTTP client); and small-file write
//! throughput (4 KiB files, 32 concurrent writers) with scanning on if `CLAMD_ADDR` is set.
//!
//!   cargo bench -p satchel-server --bench scale                              # SQLite
//!   DATABASE_URL=postgres://… cargo bench -p satchel-server --bench scale    # PostgreSQL

use satchel::scanner::{ClamdAddress, ClamdConfig, ClamdScanner, NoScan, Scanner};
use satchel::{Config, ListOptions, Satchel, WorkspaceManager, WriteOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SESSIONS: u64 = 100;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn measure<F, Fut>(name: &str, runs: usize, mut f: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future,
{
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        f(i).await;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "  {name:<34} p50 {:>8.3} ms   p99 {:>8.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
}

async fn bulk_load(database_url: &str, workspace_id: uuid::Uuid, n: u64) {
    let t = Instant::now();
    if database_url.starts_with("postgres") {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(database_url).await.expect("pg");
        sqlx::query(
            "INSERT INTO files (id, workspace_id, name, path, storage_path, mime_type, size_bytes, checksum, \
             metadata, created_at, updated_at) \
             SELECT gen_random_uuid(), $1, 'f' || i || '.txt', \
               '/sessions/s' || (i % 100) || '/dir' || (i % 7) || '/f' || i || '.txt', \
               'local://' || $1 || '/' || gen_random_uuid() || '/f.txt', 'text/plain', 4096, \
               repeat('0', 64), '{}', now() - (i || ' seconds')::interval, now() \
             FROM generate_series(1, $2::bigint) AS i",
        )
        .bind(workspace_id)
        .bind(n as i64)
        .execute(&mut c)
        .await
        .expect("bulk insert");
        sqlx::query("ANALYZE files")
            .execute(&mut c)
            .await
            .expect("analyze");
    } else {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(database_url)
            .await
            .expect("sqlite");
        let ws = workspace_id;
        let now_us = chrono::Utc::now().timestamp_micros();
        sqlx::query(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?2) \
             INSERT INTO files (id, workspace_id, name, path, storage_path, mime_type, size_bytes, checksum, \
             metadata, created_at, updated_at) \
             SELECT randomblob(16), ?1, 'f' || i || '.txt', \
               '/sessions/s' || (i % 100) || '/dir' || (i % 7) || '/f' || i || '.txt', \
               'local://x/' || i || '/f.txt', 'text/plain', 4096, printf('%064d', 0), '{}', ?3 - i * 1000000, ?3 \
             FROM seq",
        )
        .bind(ws)
        .bind(n as i64)
        .bind(now_us)
        .execute(&mut c)
        .await
        .expect("bulk insert");
        sqlx::query("ANALYZE")
            .execute(&mut c)
            .await
            .expect("analyze");
    }
    println!(
        "bulk-loaded {n} records in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

async fn open(
    dir: &std::path::Path,
    database_url: Option<String>,
    scanner: Arc<dyn Scanner>,
) -> Satchel {
    let mut env = HashMap::new();
    env.insert("APP_DATA_DIR".to_string(), dir.display().to_string());
    if let Some(url) = database_url {
        env.insert("DATABASE_URL".to_string(), url);
    }
    let config = Config::from_sources(None, &env).expect("config");
    let catalog = satchel::catalog::connect(&config.database_url)
        .await
        .expect("catalog");
    let store = satchel::storage::open_from_config(&config)
        .await
        .expect("store");
    Satchel::from_parts(config, catalog, store, scanner)
}

async fn fresh_pg(base: &str) -> String {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(base).await.expect("pg");
    let name = format!("scale_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .expect("create db");
    let server = base.rsplit_once('/').expect("db name").0;
    format!("{server}/{name}")
}

async fn queries(ws: &WorkspaceManager, n: u64) {
    let folder = |path: &str| ListOptions {
        path: Some(path.into()),
        limit: Some(50),
        ..Default::default()
    };
    measure("first page, whole workspace", 200, |_| async {
        ws.list_files(&ListOptions::default()).await.expect("list");
    })
    .await;
    measure("first page, folder /sessions/s7/", 200, |_| async {
        ws.list_files(&folder("/sessions/s7")).await.expect("list");
    })
    .await;
    measure("first page, folder /sessions/s7/dir3/", 200, |_| async {
        ws.list_files(&folder("/sessions/s7/dir3"))
            .await
            .expect("list");
    })
    .await;
    let deep = ListOptions {
        path: Some("/sessions/s7".into()),
        limit: Some(50),
        offset: Some(5000),
        ..Default::default()
    };
    measure("offset 5000 page, folder s7", 50, |_| async {
        ws.list_files(&deep).await.expect("list");
    })
    .await;
    // A cursor deep into the folder: walk there once, then time that page.
    let mut cursor = None;
    for _ in 0..100 {
        let p = ws
            .list_files(&ListOptions {
                cursor: cursor.clone(),
                ..folder("/sessions/s7")
            })
            .await
            .expect("list");
        cursor = p.next_cursor;
    }
    let at_cursor = ListOptions {
        cursor,
        ..folder("/sessions/s7")
    };
    measure("cursor page (after 5000), folder s7", 200, |_| async {
        ws.list_files(&at_cursor).await.expect("list");
    })
    .await;
    measure("count, folder s7", 50, |_| async {
        ws.get_file_count(&folder("/sessions/s7"))
            .await
            .expect("count");
    })
    .await;
    measure("count, whole workspace", 10, |_| async {
        ws.get_file_count(&ListOptions::default())
            .await
            .expect("count");
    })
    .await;
    let ids: Vec<_> = ws
        .list_files(&ListOptions {
            limit: Some(200),
            ..Default::default()
        })
        .await
        .expect("ids")
        .files
        .iter()
        .map(|f| f.id)
        .collect();
    measure("get_file_info", 200, |i| {
        let id = ids[i % ids.len()];
        async move {
            ws.get_file_info(id).await.expect("info");
        }
    })
    .await;
    measure("get_file_info_by_path", 200, |i| {
        let p = format!(
            "/sessions/s{}/dir{}/f{}.txt",
            (i as u64 + 1) % SESSIONS,
            (i + 1) % 7,
            i + 1
        );
        async move {
            ws.get_file_info_by_path(&p).await.expect("by path");
        }
    })
    .await;
    let _ = n;
}

/// The same questions over HTTP, against the real router served on 127.0.0.1.
async fn http_queries(satchel: &Satchel) {
    let app = satchel_server::App::new(satchel.clone())
        .await
        .expect("app");
    let token = satchel_server::auth::mint_token(app.secrets(), "scale", Duration::from_secs(3600))
        .expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(satchel_server::serve(app, listener, std::future::pending()));
    let client = reqwest::Client::new();
    let get = |path: String| {
        let (client, token, base) = (client.clone(), token.clone(), base.clone());
        async move {
            let r = client
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("request");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.json::<serde_json::Value>().await.expect("json")
        }
    };
    let get = &get;
    measure("GET first page, whole workspace", 200, |_| {
        get("/v1/files?limit=50".into())
    })
    .await;
    measure("GET first page, folder s7", 200, |_| {
        get("/v1/files?path=/sessions/s7&limit=50".into())
    })
    .await;
    measure("GET offset 5000 page, folder s7", 50, |_| {
        get("/v1/files?path=/sessions/s7&limit=50&offset=5000".into())
    })
    .await;
    let mut cursor = String::new();
    for _ in 0..100 {
        let page = get(format!("/v1/files?path=/sessions/s7&limit=50{cursor}")).await;
        cursor = format!("&cursor={}", page["next_cursor"].as_str().expect("cursor"));
    }
    let cursor = &cursor;
    measure("GET cursor page (after 5000), s7", 200, |_| {
        get(format!("/v1/files?path=/sessions/s7&limit=50{cursor}"))
    })
    .await;
    measure("GET count, folder s7", 50, |_| {
        get("/v1/files/count?path=/sessions/s7".into())
    })
    .await;
    let page = get("/v1/files?limit=200".into()).await;
    let ids: Vec<String> = page["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["id"].as_str().map(str::to_owned))
        .collect();
    let ids = &ids;
    measure("GET /v1/files/{id}", 200, |i| {
        get(format!("/v1/files/{}", ids[i % ids.len()]))
    })
    .await;
}

async fn small_writes(satchel: &Satchel, label: &str) {
    let ws = satchel.workspace("writer", None).await.expect("ws");
    let total = 2000usize;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let ws = ws.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= total {
                        break;
                    }
                    let mut body = vec![0u8; 4096];
                    body[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    ws.write_file(body, &format!("small{i}.bin"), WriteOptions::default())
                        .await
                        .expect("write");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let took = t.elapsed();
    println!(
        "  small-file writes ({label}): {total} × 4 KiB, 32 writers: {:.0} files/s",
        total as f64 / took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("SCALE_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "target/bench-data".into());
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(&base).expect("tempdir");
    let pg = std::env::var("DATABASE_URL").ok();
    let url = match &pg {
        Some(base) => Some(fresh_pg(base).await),
        None => None,
    };
    let satchel = open(dir.path(), url, Arc::new(NoScan)).await;
    println!("catalog: {}", satchel.catalog().backend());
    let ws = satchel.workspace("scale", None).await.expect("ws");
    bulk_load(&satchel.config().database_url, ws.workspace_id(), n).await;
    println!("library:");
    queries(&ws, n).await;
    println!("HTTP layer:");
    http_queries(&satchel).await;

    small_writes(&satchel, "no scan").await;
    if let Ok(addr) = std::env::var("CLAMD_ADDR") {
        let scanner: Arc<dyn Scanner> = Arc::new(ClamdScanner::new(ClamdConfig {
            address: ClamdAddress::Tcp(addr),
            timeout: Duration::from_secs(60),
            max_concurrency: 10,
        }));
        let dir2 = tempfile::tempdir_in(&base).expect("tempdir");
        let url = match &pg {
            Some(base) => Some(fresh_pg(base).await),
            None => None,
        };
        let scanned = open(dir2.path(), url, scanner).await;
        small_writes(&scanned, "clamd scanning").await;
    }
}
