//! Storage benchmark (not a test): prints figures, asserts nothing.
//!
//!   bash scripts/services.sh start && source "$SVC_DIR/env"
//!   cargo bench -p satchel --bench storage
//!
//! Per backend (local disk, GCS on fake-gcs-server, S3 on moto): a streamed write of
//! `BENCH_STORAGE_MIB` (1024) MiB of fresh pseudo-random bytes through `BlobStore::create`, then a
//! streamed read of it through `BlobStore::open`, with throughput and this process's peak RSS
//! growth (VmHWM, reset before each phase). Next to each, in the same run, the emulator's own
//! client path: `curl --upload-file` / `curl -o /dev/null` of the same bytes to the same
//! emulator (peak RSS of curl from `/usr/bin/time`), or `dd` for the local disk; and, because
//! the emulators handle chunked uploads very differently from single requests, curl doing the
//! same chunked protocol as Satchel (GCS resumable upload in 8 MiB chunks, S3 multipart upload
//! in 8 MiB parts).
//! `BENCH_BACKENDS=local,gcs,s3` picks backends; `BENCH_DIR` the disk (target/bench-data).

use bytes::Bytes;
use futures::StreamExt;
use satchel::storage::{BlobStore, StoreTuning};
use satchel::Config;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const CHUNK: usize = 256 * 1024;
const MIB: f64 = 1024.0 * 1024.0;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS; returns that baseline in KiB.
fn reset_peak_rss() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS")
}

/// `total` bytes of fresh pseudo-random data in `CHUNK` pieces (xorshift).
fn chunks(total: usize, seed: u64) -> impl Iterator<Item = Bytes> {
    let mut x = seed | 1;
    (0..total / CHUNK).map(move |_| {
        let mut buf = vec![0u8; CHUNK];
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        Bytes::from(buf)
    })
}

struct Figure {
    seconds: f64,
    mib_s: f64,
    peak_mib: f64,
}

impl Figure {
    fn new(bytes: usize, elapsed: Duration, peak_kib: u64) -> Figure {
        Figure {
            seconds: elapsed.as_secs_f64(),
            mib_s: bytes as f64 / MIB / elapsed.as_secs_f64(),
            peak_mib: peak_kib as f64 / 1024.0,
        }
    }
}

async fn store_write(store: &dyn BlobStore, path: &str, total: usize) -> Figure {
    let baseline = reset_peak_rss();
    let started = Instant::now();
    let mut writer = store.create(path).await.expect("create");
    for chunk in chunks(total, 42) {
        writer.write(chunk).await.expect("write");
    }
    writer.finish().await.expect("finish");
    let elapsed = started.elapsed();
    Figure::new(total, elapsed, status_kib("VmHWM").saturating_sub(baseline))
}

async fn store_read(store: &dyn BlobStore, path: &str, total: usize) -> Figure {
    let baseline = reset_peak_rss();
    let started = Instant::now();
    let mut stream = store.open(path, None).await.expect("open");
    let mut read = 0;
    while let Some(chunk) = stream.next().await {
        read += chunk.expect("read").len();
    }
    let elapsed = started.elapsed();
    assert_eq!(read, total, "read back the whole blob");
    Figure::new(total, elapsed, status_kib("VmHWM").saturating_sub(baseline))
}

/// One command under `/usr/bin/time`: its output, wall time (s) and peak RSS (KiB).
fn run(program: &str, args: &[&str]) -> Option<(String, f64, u64)> {
    let report = tempfile::NamedTempFile::new().ok()?;
    let report_path = report.path().display().to_string();
    let output = Command::new("/usr/bin/time")
        .args(["-o", &report_path, "-f", "%e %M", program])
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let times = std::fs::read_to_string(report.path()).ok()?;
    let mut parts = times.split_whitespace();
    let seconds: f64 = parts.next()?.parse().ok()?;
    let peak_kib: u64 = parts.next()?.parse().ok()?;
    Some((
        String::from_utf8_lossy(&output.stdout).into_owned(),
        seconds,
        peak_kib,
    ))
}

/// A single command's figure.
fn timed(program: &str, args: &[&str], bytes: usize) -> Option<Figure> {
    let (_, seconds, peak_kib) = run(program, args)?;
    Some(Figure::new(
        bytes,
        Duration::from_secs_f64(seconds.max(0.001)),
        peak_kib,
    ))
}

/// moto rejects anonymous GETs but checks no signature: any SigV4-shaped header will do.
const FAKE_AWS_AUTH: &str = "Authorization: AWS4-HMAC-SHA256 \
    Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

/// curl doing a GCS resumable upload of `parts` (8 MiB chunk files), as Satchel does.
fn curl_gcs_resumable(
    endpoint: &str,
    bucket: &str,
    parts: &[String],
    total: usize,
) -> Option<Figure> {
    let started = Instant::now();
    let start = format!(
        "{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&name=curl-chunked.bin"
    );
    let (headers, _, mut peak) = run(
        "curl",
        &[
            "-sSf",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            "{}",
            &start,
        ],
    )?;
    let session = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })?
        .trim()
        .to_owned();
    let mut offset = 0usize;
    for part in parts {
        let len = std::fs::metadata(part).ok()?.len() as usize;
        let end = offset + len - 1;
        let size = if end + 1 == total {
            total.to_string()
        } else {
            "*".to_string()
        };
        let range = format!("content-range: bytes {offset}-{end}/{size}");
        let (_, _, p) = run(
            "curl",
            &[
                "-sS",
                "-o",
                "/dev/null",
                "-X",
                "PUT",
                "-H",
                &range,
                "--data-binary",
                &format!("@{part}"),
                &session,
            ],
        )?;
        peak = peak.max(p);
        offset = end + 1;
    }
    Some(Figure::new(total, started.elapsed(), peak))
}

/// curl doing an S3 multipart upload of `parts` (8 MiB part files), one part at a time.
fn curl_s3_multipart(url: &str, parts: &[String], total: usize) -> Option<Figure> {
    let started = Instant::now();
    let (body, _, mut peak) = run(
        "curl",
        &[
            "-sSf",
            "-X",
            "POST",
            "-H",
            FAKE_AWS_AUTH,
            &format!("{url}?uploads"),
        ],
    )?;
    let upload_id = body
        .split("<UploadId>")
        .nth(1)?
        .split("</UploadId>")
        .next()?
        .to_owned();
    let mut complete = String::from("<CompleteMultipartUpload>");
    for (i, part) in parts.iter().enumerate() {
        let n = i + 1;
        let (headers, _, p) = run(
            "curl",
            &[
                "-sSf",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-H",
                FAKE_AWS_AUTH,
                "--upload-file",
                part,
                &format!("{url}?partNumber={n}&uploadId={upload_id}"),
            ],
        )?;
        peak = peak.max(p);
        let etag = headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("ETag: ")
                    .or_else(|| l.strip_prefix("etag: "))
            })?
            .trim()
            .to_owned();
        complete.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
        ));
    }
    complete.push_str("</CompleteMultipartUpload>");
    let (_, _, p) = run(
        "curl",
        &[
            "-sSf",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "-H",
            FAKE_AWS_AUTH,
            "-H",
            "content-type: application/xml",
            "--data-binary",
            &complete,
            &format!("{url}?uploadId={upload_id}"),
        ],
    )?;
    peak = peak.max(p);
    Some(Figure::new(total, started.elapsed(), peak))
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn create_bucket(kind: &str, endpoint: &str, bucket: &str) {
    let client = reqwest::Client::new();
    let request = match kind {
        "gcs" => client
            .post(format!("{endpoint}/storage/v1/b"))
            .body(format!("{{\"name\":\"{bucket}\"}}")),
        _ => client.put(format!("{endpoint}/{bucket}")),
    };
    let status = request.send().await.expect("emulator").status();
    assert!(status.is_success(), "create bucket: {status}");
}

fn row(what: &str, f: &Option<Figure>) {
    match f {
        Some(f) => println!(
            "| {what} | {:.1} s | **{:.0} MiB/s** | {:.1} MiB |",
            f.seconds, f.mib_s, f.peak_mib
        ),
        None => println!("| {what} | – | – | – |"),
    }
}

#[tokio::main]
async fn main() {
    let base = env_var("BENCH_DIR").unwrap_or_else(|| "target/bench-data".into());
    std::fs::create_dir_all(&base).expect("bench dir");
    let mib: usize = env_var("BENCH_STORAGE_MIB")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let total = mib * 1024 * 1024;
    let backends = env_var("BENCH_BACKENDS").unwrap_or_else(|| "local,gcs,s3".into());
    let dir = tempfile::tempdir_in(&base).expect("tempdir");

    // The same bytes as a file, for curl / dd (not timed).
    let sample = dir.path().join("sample.bin");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&sample).expect("sample"));
        for chunk in chunks(total, 42) {
            file.write_all(&chunk).expect("write sample");
        }
        file.flush().expect("flush");
    }
    let sample_arg = sample.display().to_string();
    // And as 8 MiB pieces, for curl's chunked uploads.
    let mut parts = Vec::new();
    let per_part = 8 * 1024 * 1024 / CHUNK;
    let mut source = chunks(total, 42).peekable();
    while source.peek().is_some() {
        let part = dir.path().join(format!("part-{:05}", parts.len()));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&part).expect("part"));
        for chunk in source.by_ref().take(per_part) {
            file.write_all(&chunk).expect("write part");
        }
        file.flush().expect("flush");
        parts.push(part.display().to_string());
    }

    println!("\n{mib} MiB streamed through the store vs the emulator's own client, same run\n");
    println!("| backend, what | time | throughput | peak RSS (growth for Satchel; curl's own) |");
    println!("|---|---|---|---|");
    for kind in backends.split(',').map(str::trim) {
        let mut env = HashMap::new();
        env.insert(
            "APP_DATA_DIR".to_string(),
            dir.path().join(kind).display().to_string(),
        );
        let mut config = Config::from_sources(None, &env).expect("config");
        let bucket = format!("bench-{}", Uuid::new_v4().simple());
        let endpoint = match kind {
            "local" => None,
            "gcs" => {
                let Some(e) = env_var("GCS_ENDPOINT") else {
                    eprintln!("GCS_ENDPOINT not set: skipping gcs");
                    continue;
                };
                config.media_gcs_bucket_name = Some(bucket.clone());
                config.gcs_endpoint = Some(e.clone());
                config.gcs_credentials_file = env_var("GCS_CREDENTIALS_FILE").map(Into::into);
                Some(e)
            }
            "s3" => {
                let Some(e) = env_var("S3_ENDPOINT") else {
                    eprintln!("S3_ENDPOINT not set: skipping s3");
                    continue;
                };
                config.media_s3_bucket_name = Some(bucket.clone());
                config.s3_endpoint = Some(e.clone());
                config.s3_force_path_style = true;
                Some(e)
            }
            other => {
                eprintln!("unknown backend {other}");
                continue;
            }
        };
        if let Some(e) = &endpoint {
            create_bucket(kind, e, &bucket).await;
        }
        let store: Arc<dyn BlobStore> =
            satchel::storage::open_with(&config, &StoreTuning::default())
                .await
                .expect("open store");
        let path = store.storage_path(Uuid::new_v4(), Uuid::new_v4(), "bench.bin");
        let write = store_write(store.as_ref(), &path, total).await;
        let read = store_read(store.as_ref(), &path, total).await;
        store.delete(&path).await.expect("delete");

        let mut rows = vec![(
            format!("{kind}: Satchel write (BlobStore::create)"),
            Some(write),
        )];
        match (kind, &endpoint) {
            ("gcs", Some(e)) => {
                let up =
                    format!("{e}/upload/storage/v1/b/{bucket}/o?uploadType=media&name=curl.bin");
                let down = format!("{e}/download/storage/v1/b/{bucket}/o/curl.bin?alt=media");
                rows.push((
                    format!("{kind}: curl resumable upload, same 8 MiB chunks"),
                    curl_gcs_resumable(e, &bucket, &parts, total),
                ));
                rows.push((
                    format!("{kind}: curl --upload-file, one request"),
                    timed(
                        "curl",
                        &[
                            "-sSf",
                            "-o",
                            "/dev/null",
                            "-X",
                            "POST",
                            "--upload-file",
                            &sample_arg,
                            &up,
                        ],
                        total,
                    ),
                ));
                rows.push((
                    format!("{kind}: Satchel read (BlobStore::open)"),
                    Some(read),
                ));
                rows.push((
                    format!("{kind}: curl -o /dev/null"),
                    timed("curl", &["-sSf", "-o", "/dev/null", &down], total),
                ));
            }
            ("s3", Some(e)) => {
                let url = format!("{e}/{bucket}/curl.bin");
                rows.push((
                    format!("{kind}: curl multipart upload, same 8 MiB parts"),
                    curl_s3_multipart(&format!("{e}/{bucket}/curl-multipart.bin"), &parts, total),
                ));
                rows.push((
                    format!("{kind}: curl --upload-file, one request"),
                    timed(
                        "curl",
                        &[
                            "-sSf",
                            "-o",
                            "/dev/null",
                            "-H",
                            FAKE_AWS_AUTH,
                            "--upload-file",
                            &sample_arg,
                            &url,
                        ],
                        total,
                    ),
                ));
                rows.push((
                    format!("{kind}: Satchel read (BlobStore::open)"),
                    Some(read),
                ));
                rows.push((
                    format!("{kind}: curl -o /dev/null"),
                    timed(
                        "curl",
                        &["-sSf", "-o", "/dev/null", "-H", FAKE_AWS_AUTH, &url],
                        total,
                    ),
                ));
            }
            _ => {
                let copy = dir.path().join("dd-copy.bin").display().to_string();
                rows.push((
                    format!("{kind}: dd conv=fsync, same bytes"),
                    timed(
                        "dd",
                        &[
                            &format!("if={sample_arg}"),
                            &format!("of={copy}"),
                            "bs=1M",
                            "conv=fsync",
                            "status=none",
                        ],
                        total,
                    ),
                ));
                rows.push((
                    format!("{kind}: Satchel read (BlobStore::open)"),
                    Some(read),
                ));
                rows.push((
                    format!("{kind}: dd read (page cache, like Satchel's)"),
                    timed(
                        "dd",
                        &[
                            &format!("if={copy}"),
                            "of=/dev/null",
                            "bs=1M",
                            "status=none",
                        ],
                        total,
                    ),
                ));
                let _ = std::fs::remove_file(Path::new(&copy));
            }
        }
        for (what, figure) in &rows {
            row(what, figure);
        }
        if let Some(e) = &endpoint {
            // Free the emulator's memory.
            for name in ["curl.bin", "curl-chunked.bin", "curl-multipart.bin"] {
                let request = match kind {
                    "gcs" => {
                        reqwest::Client::new().delete(format!("{e}/storage/v1/b/{bucket}/o/{name}"))
                    }
                    _ => reqwest::Client::new()
                        .delete(format!("{e}/{bucket}/{name}"))
                        .header("authorization", &FAKE_AWS_AUTH["Authorization: ".len()..]),
                };
                let _ = request.send().await;
            }
        }
    }
}
