//! store_media_file benchmark (not a test): prints figures, asserts nothing.
//!
//!   cargo bench -p satchel --bench media                      # scanning off (NoScan)
//!   CLAMD_ADDR=127.0.0.1:3310 cargo bench -p satchel --bench media   # scanning through clamd
//!
//! 1. a 50 MiB data URI → `for_local_processing` (strict base64 decode + hash + fsync), next to
//!    `base64 -d` decoding the same text from a file to a file;
//! 2. a 50 MiB local file → `for_external_api` (a 67 MiB data URI string), next to
//!    `base64 -w0` encoding the same file.
//!
//! Each with wall time and peak RSS (Linux `VmHWM`, reset between phases through
//! `/proc/self/clear_refs`). For satchel the RSS before the call is shown too: the input
//! string (phase 1) and the output string (phase 2) are inherent to the API, the rest is the
//! pipeline's own overhead. `BENCH_DIR` picks the disk (default target/bench-data);
//! `BENCH_MEDIA_MIB` the size (50).

use base64::Engine as _;
use satchel::media::{store_media_file, ExecutionContext, ReturnFormat};
use satchel::scanner::{NoScan, Scanner};
use satchel::{Config, Satchel};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

/// Current and peak resident set size of this process, in KiB (`VmRSS`, `VmHWM`).
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak RSS counter so that a phase is measured on its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = vec![0u8; len];
    for word in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
    out
}

fn scanner() -> (Arc<dyn Scanner>, &'static str) {
    match std::env::var("CLAMD_ADDR") {
        Ok(addr) => {
            let (host, port) = addr.rsplit_once(':').expect("CLAMD_ADDR is host:port");
            let mut env = HashMap::new();
            env.insert("CLAMAV_SERVICE_HOST".to_string(), host.to_string());
            env.insert("CLAMAV_SERVICE_PORT".to_string(), port.to_string());
            env.insert("CLAMAV_SERVICE_TIMEOUT".to_string(), "120".to_string());
            let config = Config::from_sources(None, &env).expect("config");
            (
                satchel::workspace::scanner_from_config(&config),
                "clamd scan",
            )
        }
        Err(_) => (Arc::new(NoScan), "no scan"),
    }
}

async fn satchel_at(dir: &Path, scanner: Arc<dyn Scanner>) -> Satchel {
    let mut env = HashMap::new();
    env.insert("APP_DATA_DIR".to_string(), dir.display().to_string());
    env.insert(
        "EXEC_FILE_DIR".to_string(),
        dir.join("exec").display().to_string(),
    );
    env.insert("MAX_FILE_SIZE_MB".to_string(), "1024".to_string());
    env.insert("EXEC_DIR_MAX_MB".to_string(), "8192".to_string());
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

/// Runs `cmd` with stdin and stdout on files, under `/usr/bin/time -f %M` when available.
/// Returns the wall time and the child's peak RSS in KiB (if measured).
fn run_tool(args: &[&str], input: &Path, output: &Path) -> (Duration, Option<u64>) {
    let timed = Path::new("/usr/bin/time").exists();
    let mut command = if timed {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f").arg("%M").args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    };
    let stdin = std::fs::File::open(input).expect("tool input");
    let stdout = std::fs::File::create(output).expect("tool output");
    let t = Instant::now();
    let out = command
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("run tool");
    let took = t.elapsed();
    assert!(out.status.success(), "{args:?} failed");
    let peak = timed
        .then(|| String::from_utf8_lossy(&out.stderr).trim().parse().ok())
        .flatten();
    (took, peak)
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1048576.0 / d.as_secs_f64()
}

fn show_kib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

#[tokio::main]
async fn main() {
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "target/bench-data".into());
    std::fs::create_dir_all(&base).expect("bench dir");
    let mib: usize = std::env::var("BENCH_MEDIA_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let total = mib * 1024 * 1024;
    let dir = tempfile::tempdir_in(&base).expect("tempdir");
    let (scanner, scan_label) = scanner();
    let satchel = satchel_at(dir.path(), scanner).await;
    println!("store_media_file, {mib} MiB, {scan_label}; RSS figures are peak (before the call)");

    // 1. data URI → for_local_processing, next to `base64 -d`.
    let b64_path = dir.path().join("input.b64");
    let raw_path = dir.path().join("raw.bin");
    let uri = {
        let content = noise(total, 42);
        std::fs::write(&raw_path, &content).expect("raw file");
        let mut uri = String::with_capacity(total / 3 * 4 + 64);
        uri.push_str("data:application/octet-stream;base64,");
        base64::engine::general_purpose::STANDARD.encode_string(&content, &mut uri);
        std::fs::write(
            &b64_path,
            &uri.as_bytes()[uri.find(',').map_or(0, |i| i + 1)..],
        )
        .expect("b64 file");
        uri
    };
    for round in 0..ROUNDS {
        let ctx = ExecutionContext::new(format!("bench-decode-{round}"), "bench");
        let (before, _) = rss_kib();
        reset_peak_rss();
        let t = Instant::now();
        let name = store_media_file(&satchel, &uri, &ctx, ReturnFormat::ForLocalProcessing)
            .await
            .expect("store data URI");
        let took = t.elapsed();
        let (_, peak) = rss_kib();
        let (tool, tool_peak) = run_tool(
            &["base64", "-d"],
            &b64_path,
            &dir.path().join(format!("decoded-{round}.bin")),
        );
        println!(
            "data URI ({:.0} MiB text) → for_local_processing: {:.3} s, {:.0} MiB/s, peak RSS {} ({}) | base64 -d: {:.3} s, {:.0} MiB/s, peak RSS {} | satchel/base64 time {:.2}",
            uri.len() as f64 / 1048576.0,
            took.as_secs_f64(),
            mib_s(total, took),
            show_kib(Some(peak)),
            show_kib(Some(before)),
            tool.as_secs_f64(),
            mib_s(total, tool),
            show_kib(tool_peak),
            took.as_secs_f64() / tool.as_secs_f64(),
        );
        let _ = name;
        satchel::media::clean_exec_files(&satchel, &ctx.graph_exec_id)
            .await
            .expect("clean");
    }
    drop(uri);

    // 2. local file → for_external_api, next to `base64 -w0`.
    let ctx = ExecutionContext::new("bench-encode", "bench");
    let folder = satchel::media::exec_folder_path(&satchel, &ctx.graph_exec_id).expect("folder");
    std::fs::create_dir_all(&folder).expect("exec folder");
    std::fs::copy(&raw_path, folder.join("local.bin")).expect("local file");
    for round in 0..ROUNDS {
        let (before, _) = rss_kib();
        reset_peak_rss();
        let t = Instant::now();
        let out = store_media_file(&satchel, "local.bin", &ctx, ReturnFormat::ForExternalApi)
            .await
            .expect("encode local file");
        let took = t.elapsed();
        let (_, peak) = rss_kib();
        let out_len = out.len();
        drop(out);
        let (tool, tool_peak) = run_tool(
            &["base64", "-w0"],
            &raw_path,
            &dir.path().join(format!("encoded-{round}.b64")),
        );
        println!(
            "local file → for_external_api ({:.0} MiB string): {:.3} s, {:.0} MiB/s, peak RSS {} ({}) | base64 -w0: {:.3} s, {:.0} MiB/s, peak RSS {} | satchel/base64 time {:.2}",
            out_len as f64 / 1048576.0,
            took.as_secs_f64(),
            mib_s(total, took),
            show_kib(Some(peak)),
            show_kib(Some(before)),
            tool.as_secs_f64(),
            mib_s(total, tool),
            show_kib(tool_peak),
            took.as_secs_f64() / tool.as_secs_f64(),
        );
    }
}
