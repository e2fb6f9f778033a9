//! Write-path benchmark (not a test): prints figures, asserts nothing.
//!
//!   cargo bench -p satchel --bench write_path                 # 1 GiB write, no scanning, vs dd
//!   CLAMD_ADDR=127.0.0.1:3310 cargo bench -p satchel --bench write_path   # + 100 MiB scan ratio
//!
//! `BENCH_DIR` picks the disk (default: target/bench-data); `BENCH_WRITE_MIB` the size (1024).

use bytes::Bytes;
use satchel::scanner::{ClamdAddress, ClamdConfig, ClamdScanner, NoScan, Scanner};
use satchel::{Config, Satchel, WriteOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHUNK: usize = 256 * 1024;

/// Peak resident set size of this process so far, in KiB (Linux `VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS counter so that a phase is measured on its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `n` chunks of fresh pseudo-random bytes (fresh, so clamd's cache cannot help).
fn random_stream(total: usize, seed: u64) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    let mut x = seed | 1;
    let chunks = total / CHUNK;
    futures::stream::iter((0..chunks).map(move |_| {
        let mut buf = vec![0u8; CHUNK];
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        Ok(Bytes::from(buf))
    }))
}

async fn satchel_at(dir: &std::path::Path, scanner: Arc<dyn Scanner>) -> Satchel {
    let mut env = HashMap::new();
    env.insert("APP_DATA_DIR".to_string(), dir.display().to_string());
    env.insert("MAX_FILE_SIZE_MB".to_string(), "4096".to_string());
    let config = Config::from_sources(None, &env).expect("config");
    let catalog = satchel::catalog::connect(&config.database_url)
        .await
        .expect("catalog");
    let store = Arc::new(
        satchel::storage::LocalStore::open(&config.workspace_storage_dir)
            .await
            .expect("store"),
    );
    Satchel::from_parts(config, catalog, store, scanner)
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1048576.0 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "target/bench-data".into());
    std::fs::create_dir_all(&base).expect("bench dir");
    let mib: usize = std::env::var("BENCH_WRITE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let total = mib * 1024 * 1024;
    let dir = tempfile::tempdir_in(&base).expect("tempdir");

    // 1. A streamed write_file of `mib` MiB, scanning off.
    let satchel = satchel_at(dir.path(), Arc::new(NoScan)).await;
    let ws = satchel.workspace("bench", None).await.expect("workspace");
    let idle = peak_rss_kib();
    reset_peak_rss();
    let t = Instant::now();
    let f = ws
        .write_stream(random_stream(total, 7), "big.bin", WriteOptions::default())
        .await
        .expect("write");
    let took = t.elapsed();
    let peak = peak_rss_kib();
    assert_eq!(f.file.size_bytes as usize, total);
    println!("write_stream {mib} MiB (hash + fsync, no scan): {:.2} s, {:.0} MiB/s, peak RSS {} MiB (idle before: {} MiB)",
        took.as_secs_f64(), mib_s(total, took), peak / 1024, idle / 1024);

    // dd writing the same number of bytes to the same disk, fsynced.
    let out = dir.path().join("dd.bin");
    let t = Instant::now();
    let status = std::process::Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", out.display()))
        .arg("bs=1M")
        .arg(format!("count={mib}"))
        .arg("conv=fsync")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("dd");
    let dd = t.elapsed();
    assert!(status.success());
    println!(
        "dd bs=1M conv=fsync {mib} MiB:                 {:.2} s, {:.0} MiB/s  (satchel/dd = {:.2})",
        dd.as_secs_f64(),
        mib_s(total, dd),
        mib_s(total, took) / mib_s(total, dd)
    );
    drop(ws);

    // 2. Scanning: a 100 MiB write through clamd next to clamd's own INSTREAM of fresh bytes.
    let Ok(addr) = std::env::var("CLAMD_ADDR") else {
        println!("(CLAMD_ADDR unset: scan benchmark skipped)");
        return;
    };
    let scan_total = 100 * 1024 * 1024;
    let scanner: Arc<dyn Scanner> = Arc::new(ClamdScanner::new(ClamdConfig {
        address: ClamdAddress::Tcp(addr),
        timeout: Duration::from_secs(120),
        max_concurrency: 4,
    }));
    let dir2 = tempfile::tempdir_in(&base).expect("tempdir");
    let satchel = satchel_at(dir2.path(), scanner.clone()).await;
    let ws = satchel.workspace("bench", None).await.expect("workspace");
    for round in 0..5u64 {
        // clamd alone: INSTREAM of fresh bytes, same chunking.
        let t = Instant::now();
        let mut session = scanner.begin().await.expect("scan");
        let mut source = std::pin::pin!(random_stream(scan_total, 100 + round));
        while let Some(chunk) = futures::StreamExt::next(&mut source).await {
            session.feed(chunk.expect("chunk")).await.expect("feed");
        }
        session.finish().await.expect("verdict");
        let clamd_only = t.elapsed();
        reset_peak_rss();
        let t = Instant::now();
        ws.write_stream(
            random_stream(scan_total, 200 + round),
            &format!("scan{round}.bin"),
            WriteOptions::default(),
        )
        .await
        .expect("scanned write");
        let full = t.elapsed();
        println!(
            "100 MiB scanned write: {:.2} s; clamd INSTREAM alone: {:.2} s; ratio {:.2}; peak RSS {} MiB",
            full.as_secs_f64(),
            clamd_only.as_secs_f64(),
            full.as_secs_f64() / clamd_only.as_secs_f64(),
            peak_rss_kib() / 1024
        );
    }
}
