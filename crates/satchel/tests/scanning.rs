//! Scanning in the write pipeline, against a real clamd (`CLAMD_ADDR`, started by
//! `scripts/services.sh`): clean content is kept, infected content and scanner failures keep
//! nothing, and the outcome is never confused. Runs on both catalogs.

mod common;

use bytes::Bytes;
use common::{Backend, TestEnv};
use satchel::{ErrorCode, ErrorDetail, ListOptions, WriteOptions};
use std::sync::Arc;
use std::time::Duration;

/// The EICAR test string, assembled at run time so this file is not itself "infected".
fn eicar() -> Vec<u8> {
    let mut s = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-".to_vec();
    s.extend_from_slice(b"STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    s
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn clamd_vars(addr: &str, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let (host, port) = addr.rsplit_once(':').expect("CLAMD_ADDR is host:port");
    let mut v = vec![
        ("CLAMAV_SERVICE_ENABLED", "true".to_owned()),
        ("CLAMAV_SERVICE_HOST", host.to_owned()),
        ("CLAMAV_SERVICE_PORT", port.to_owned()),
        ("CLAMAV_SERVICE_TIMEOUT", "30".to_owned()),
    ];
    v.extend(extra.iter().cloned());
    v
}

async fn scanning_env(backend: Backend, extra: &[(&'static str, String)]) -> Option<TestEnv> {
    let Ok(addr) = std::env::var("CLAMD_ADDR") else {
        assert!(
            common::skip_external(),
            "CLAMD_ADDR is not set: run scripts/services.sh start"
        );
        return None;
    };
    env_with_clamd(backend, &addr, extra).await
}

async fn env_with_clamd(
    backend: Backend,
    addr: &str,
    extra: &[(&'static str, String)],
) -> Option<TestEnv> {
    let vars = clamd_vars(addr, extra);
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let probe = satchel::Config::from_sources(
        None,
        &borrowed
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .expect("config");
    let scanner = satchel::workspace::scanner_from_config(&probe);
    TestEnv::with_scanner(backend, &borrowed, scanner).await
}

fn chunks(data: Vec<u8>, size: usize) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    let parts: Vec<_> = data
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(parts)
}

/// Checks `w` has no file and the store holds exactly `blobs` blobs (other users' files).
async fn assert_nothing_kept(env: &TestEnv, w: &satchel::WorkspaceManager, blobs: usize) {
    for _ in 0..50 {
        if env.blob_files().len() == blobs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(env.blob_files().len(), blobs, "no blob kept");
    assert!(env.staged_files().is_empty(), "no staged file kept");
    assert_eq!(
        w.get_file_count(&ListOptions::default()).await.unwrap(),
        0,
        "no record"
    );
}

async fn clean_and_infected(backend: Backend) {
    let Some(env) = scanning_env(backend, &[]).await else {
        return;
    };
    let w = env.satchel.workspace("alice", None).await.unwrap();
    // Clean content is kept; empty content needs no scan.
    let clean = noise(3 * 1024 * 1024, 1);
    w.write_stream(
        chunks(clean.clone(), 64 * 1024),
        "clean.bin",
        WriteOptions::default(),
    )
    .await
    .unwrap();
    w.write_file(Bytes::new(), "empty", WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(&w.read_file("/clean.bin").await.unwrap()[..], &clean[..]);
    let w2 = env.satchel.workspace("bob", None).await.unwrap();

    // EICAR alone.
    let e = w2
        .write_file(eicar(), "eicar.com", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::VirusDetected);
    let ErrorDetail::Threat(threat) = &e.detail else {
        panic!("no threat in {e:?}")
    };
    assert!(threat.contains("Eicar"), "{threat}");

    // EICAR inside a few MiB of noise, straddling a chunk boundary.
    let chunk = 64 * 1024;
    let mut data = noise(3 * 1024 * 1024, 2);
    let at = 20 * chunk - 30;
    data.splice(at..at + eicar().len(), eicar());
    let e = w2
        .write_stream(chunks(data, chunk), "hidden.bin", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::VirusDetected);
    // Overwriting a clean file with infected content keeps the clean one.
    let e = w
        .write_file(
            eicar(),
            "clean.bin",
            WriteOptions {
                on_conflict: satchel::OnConflict::Overwrite,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::VirusDetected);
    assert_eq!(&w.read_file("/clean.bin").await.unwrap()[..], &clean[..]);
    assert_nothing_kept(&env, &w2, 2).await;
}

async fn over_stream_limit_is_unavailable(backend: Backend) {
    let limit_mb: usize = std::env::var("CLAMD_STREAM_MAX_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let Some(env) = scanning_env(
        backend,
        &[("MAX_FILE_SIZE_MB", (limit_mb + 20).to_string())],
    )
    .await
    else {
        return;
    };
    let w = env.satchel.workspace("alice", None).await.unwrap();
    let total = (limit_mb + 10) * 1024 * 1024;
    let piece = Bytes::from(vec![0u8; 1024 * 1024]);
    let source = futures::stream::iter((0..total / piece.len()).map(move |_| Ok(piece.clone())));
    let e = w
        .write_stream(source, "big.bin", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ScannerUnavailable, "{e}");
    assert!(e.code.retryable());
    assert_nothing_kept(&env, &w, 0).await;
}

async fn concurrent_scans_are_capped_and_correct(backend: Backend) {
    let Some(env) = scanning_env(backend, &[("CLAMAV_MAX_CONCURRENCY", "4".into())]).await else {
        return;
    };
    let w = env.satchel.workspace("alice", None).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                let mut data = noise(200 * 1024, i as u64 + 10);
                if i % 2 == 1 {
                    data.splice(1000..1000 + eicar().len(), eicar());
                }
                (
                    i,
                    w.write_file(data, &format!("f{i}"), WriteOptions::default())
                        .await,
                )
            })
        })
        .collect();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match (i % 2, r) {
            (0, Ok(_)) => {}
            (1, Err(e)) if e.code == ErrorCode::VirusDetected => {}
            (_, other) => panic!("write {i}: unexpected {other:?}"),
        }
    }
    assert_eq!(w.get_file_count(&ListOptions::default()).await.unwrap(), 25);
    assert!(env.staged_files().is_empty());
}

on_both_catalogs!(
    clean_and_infected,
    over_stream_limit_is_unavailable,
    concurrent_scans_are_capped_and_correct
);

/// A private clamd this test can stop and restart.
struct PrivateClamd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateClamd {
    fn start(dir: tempfile::TempDir, port: u16) -> PrivateClamd {
        let clamd = ["/usr/sbin/clamd", "/usr/bin/clamd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("clamd is installed (scripts/services.sh installs it)");
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).unwrap();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        let sig: String = eicar().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            d.join("db/test.ndb"),
            format!("Eicar-Test-Signature:0:*:{sig}\n"),
        )
        .unwrap();
        std::fs::write(
            d.join("clamd.conf"),
            format!(
                "Foreground true\nDatabaseDirectory {db}\nTemporaryDirectory {tmp}\nTCPSocket {port}\n\
                 TCPAddr 127.0.0.1\nStreamMaxLength 50M\nMaxFileSize 50M\nMaxScanSize 100M\n\
                 AlertExceedsMax true\nSelfCheck 0\nLogFile {log}\n",
                db = d.join("db").display(),
                tmp = d.join("tmp").display(),
                log = d.join("clamd.log").display(),
            ),
        )
        .unwrap();
        let child = std::process::Command::new(clamd)
            .arg("-c")
            .arg(d.join("clamd.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn clamd");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "private clamd did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        PrivateClamd {
            dir,
            port,
            child: Some(child),
        }
    }

    fn stop(mut self) -> (tempfile::TempDir, u16) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, self.port)
    }
}

impl Drop for PrivateClamd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// clamd stopped mid-suite → `scanner_unavailable` and nothing kept; restarted → writes
/// succeed again, with no restart of Satchel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clamd_outage_fails_closed_and_recovers() {
    if std::env::var("CLAMD_ADDR").is_err() && common::skip_external() {
        return;
    }
    let port = free_port();
    let clamd = PrivateClamd::start(tempfile::tempdir().unwrap(), port);
    let Some(env) = env_with_clamd(
        Backend::Sqlite,
        &format!("127.0.0.1:{port}"),
        &[("CLAMAV_SERVICE_TIMEOUT", "5".into())],
    )
    .await
    else {
        return;
    };
    let w = env.satchel.workspace("alice", None).await.unwrap();
    w.write_file(noise(100_000, 3), "before", WriteOptions::default())
        .await
        .unwrap();
    assert!(env.satchel.scanner().ping().await.is_ok());

    let (dir, port) = clamd.stop();
    for i in 0..3 {
        let e = w
            .write_file(eicar(), &format!("during{i}"), WriteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::ScannerUnavailable,
            "never reported as an infection"
        );
        let e = w
            .write_file(
                noise(1000, i),
                &format!("clean{i}"),
                WriteOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::ScannerUnavailable,
            "never accepted unscanned"
        );
    }
    assert!(env.satchel.scanner().ping().await.is_err());
    assert_eq!(w.get_file_count(&ListOptions::default()).await.unwrap(), 1);
    assert!(env.staged_files().is_empty());
    assert_eq!(env.blob_files().len(), 1);

    let _clamd = PrivateClamd::start(dir, port);
    w.write_file(noise(100_000, 4), "after", WriteOptions::default())
        .await
        .unwrap();
    let e = w
        .write_file(eicar(), "after-eicar", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::VirusDetected);
    assert_eq!(w.get_file_count(&ListOptions::default()).await.unwrap(), 2);
    let _ = Arc::clone(env.satchel.scanner());
}
