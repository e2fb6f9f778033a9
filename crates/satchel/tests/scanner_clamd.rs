//! The clamd INSTREAM client against a real clamd.
//!
//! ```text
//! scripts/services.sh start && source "${TMPDIR:-/tmp}/satchel-services/env"
//! cargo test -p satchel --test scanner_clamd
//! ```
//!
//! `CLAMD_ADDR` (host:port) is required: without it these tests fail, unless
//! `SATCHEL_SKIP_EXTERNAL=1` is set, in which case they pass without checking anything.
//! `CLAMD_SOCKET` (clamd's unix socket) is optional and enables the unix-socket test.
//!
//! Over-limit test: the clamd of `scripts/services.sh` runs with `StreamMaxLength 120M` (exported as
//! `CLAMD_STREAM_MAX_MB`), and the test streams that limit plus 10 MiB of zeros. 130 MiB over
//! loopback takes a few seconds and clamd refuses it before scanning anything; a smaller limit
//! would be faster but would sit below the service's default 100 MB file cap, which is not a
//! configuration anyone should copy. Against another clamd, set `CLAMD_STREAM_MAX_MB` to its
//! `StreamMaxLength` in MiB.

use std::time::Duration;

use bytes::Bytes;
use satchel::scanner::{ClamdAddress, ClamdConfig, ClamdScanner, ScanError, Scanner, Verdict};

const CHUNK: usize = 64 * 1024;
const MIB: usize = 1024 * 1024;
/// Nothing listens on port 1.
const CLOSED_PORT: &str = "127.0.0.1:1";

/// The EICAR test string, assembled at run time so that this file does not contain it whole.
fn eicar() -> Vec<u8> {
    [
        &b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"[..],
        &b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"[..],
    ]
    .concat()
}

/// Fresh pseudo-random bytes (xorshift64*): distinct seeds keep clamd's cache out of the way.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `CLAMD_ADDR`, or `None` when external tests are skipped on purpose.
fn clamd_addr() -> Option<String> {
    match std::env::var("CLAMD_ADDR") {
        Ok(addr) if !addr.is_empty() => Some(addr),
        _ if std::env::var("SATCHEL_SKIP_EXTERNAL").as_deref() == Ok("1") => {
            eprintln!("CLAMD_ADDR unset and SATCHEL_SKIP_EXTERNAL=1: skipping");
            None
        }
        _ => panic!(
            "CLAMD_ADDR is not set. Start a clamd with `scripts/services.sh start` and \
             `source \"${{TMPDIR:-/tmp}}/satchel-services/env\"`, or set SATCHEL_SKIP_EXTERNAL=1 \
             to skip the tests that need external services."
        ),
    }
}

fn scanner(address: ClamdAddress, max_concurrency: usize) -> ClamdScanner {
    ClamdScanner::new(ClamdConfig {
        address,
        timeout: Duration::from_secs(60),
        max_concurrency,
    })
}

fn tcp_scanner(addr: &str) -> ClamdScanner {
    scanner(ClamdAddress::Tcp(addr.to_owned()), 4)
}

/// Scans `data`, fed in `chunk`-sized pieces like the ingest pipeline does.
async fn scan(scanner: &ClamdScanner, data: &[u8], chunk: usize) -> Result<Verdict, ScanError> {
    let mut session = scanner.begin().await?;
    for piece in data.chunks(chunk) {
        session.feed(Bytes::copy_from_slice(piece)).await?;
    }
    session.finish().await
}

fn assert_eicar(verdict: Result<Verdict, ScanError>) {
    match verdict {
        Ok(Verdict::Infected(name)) => assert!(name.contains("Eicar"), "{name}"),
        other => panic!("expected the EICAR signature, got {other:?}"),
    }
}

fn assert_clean(verdict: Result<Verdict, ScanError>) {
    assert!(
        matches!(verdict, Ok(Verdict::Clean)),
        "expected Clean, got {verdict:?}"
    );
}

fn unavailable_reason(result: Result<Verdict, ScanError>) -> String {
    match result {
        Err(ScanError::Unavailable(reason)) => reason,
        Ok(verdict) => panic!("expected Unavailable, got {verdict:?}"),
    }
}

#[tokio::test]
async fn ping_and_version() {
    let Some(addr) = clamd_addr() else { return };
    let scanner = tcp_scanner(&addr);
    assert!(scanner.enabled());
    scanner.ping().await.unwrap();
    let version = scanner.version().await.unwrap();
    assert!(version.starts_with("ClamAV "), "{version}");
}

#[tokio::test]
async fn clean_data_is_clean() {
    let Some(addr) = clamd_addr() else { return };
    let scanner = tcp_scanner(&addr);
    assert_clean(scan(&scanner, b"just some text\n", CHUNK).await);
    assert_clean(scan(&scanner, &random_bytes(MIB, 1), CHUNK).await);
}

#[tokio::test]
async fn eicar_alone_is_infected() {
    let Some(addr) = clamd_addr() else { return };
    assert_eicar(scan(&tcp_scanner(&addr), &eicar(), CHUNK).await);
}

#[tokio::test]
async fn eicar_split_across_two_chunks_of_a_large_stream_is_infected() {
    let Some(addr) = clamd_addr() else { return };
    let eicar = eicar();
    let mut data = random_bytes(3 * MIB, 2);
    // 30 bytes before the end of chunk 20, the rest at the start of chunk 21.
    let at = 21 * CHUNK - 30;
    data[at..at + eicar.len()].copy_from_slice(&eicar);
    assert_eq!(
        at / CHUNK + 1,
        (at + eicar.len() - 1) / CHUNK,
        "must straddle a boundary"
    );
    assert_eicar(scan(&tcp_scanner(&addr), &data, CHUNK).await);
}

#[tokio::test]
async fn empty_content_is_clean_without_connecting() {
    // Nothing listens on the address: a connection attempt would fail.
    let scanner = tcp_scanner(CLOSED_PORT);
    let session = scanner.begin().await.unwrap();
    assert_clean(session.finish().await);
    assert_clean(scan(&scanner, b"", CHUNK).await);
}

#[tokio::test]
async fn unreachable_daemon_is_unavailable() {
    let scanner = tcp_scanner(CLOSED_PORT);
    let reason = unavailable_reason(scan(&scanner, b"data", CHUNK).await);
    assert!(reason.contains("connect"), "{reason}");
    assert!(scanner.ping().await.is_err());
    assert!(scanner.version().await.is_err());
}

#[tokio::test]
async fn stream_over_the_daemon_limit_is_unavailable_not_infected() {
    let Some(addr) = clamd_addr() else { return };
    let limit_mb: usize = std::env::var("CLAMD_STREAM_MAX_MB")
        .ok()
        .map(|mb| {
            mb.parse()
                .expect("CLAMD_STREAM_MAX_MB must be a number of MiB")
        })
        .unwrap_or(120);
    let scanner = tcp_scanner(&addr);
    let zeros = Bytes::from(vec![0u8; MIB]);
    let mut session = scanner.begin().await.unwrap();
    let mut outcome = None;
    for _ in 0..limit_mb + 10 {
        if let Err(err) = session.feed(zeros.clone()).await {
            outcome = Some(Err(err));
            break;
        }
    }
    let outcome = match outcome {
        Some(failed) => failed,
        None => session.finish().await,
    };
    match outcome {
        Err(ScanError::Unavailable(reason)) => {
            assert!(reason.contains("size limit"), "{reason}")
        }
        Ok(verdict) => panic!(
            "{} MiB were accepted ({verdict:?}): is clamd's StreamMaxLength really \
             CLAMD_STREAM_MAX_MB={limit_mb} MiB?",
            limit_mb + 10
        ),
    }
    // The daemon is fine afterwards.
    assert_clean(scan(&scanner, b"after the refusal", CHUNK).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_scans_with_four_slots_are_all_right() {
    let Some(addr) = clamd_addr() else { return };
    let scanner = scanner(ClamdAddress::Tcp(addr), 4);
    let scans = (0..50u64).map(|i| {
        let scanner = scanner.clone();
        tokio::spawn(async move {
            let mut data = random_bytes(256 * 1024, 100 + i);
            let infected = i % 2 == 1;
            if infected {
                let eicar = eicar();
                let at = 1000 + i as usize * 997;
                data[at..at + eicar.len()].copy_from_slice(&eicar);
            }
            (infected, scan(&scanner, &data, CHUNK).await)
        })
    });
    for (i, scan) in futures::future::join_all(scans)
        .await
        .into_iter()
        .enumerate()
    {
        let (infected, verdict) = scan.unwrap();
        match (infected, verdict) {
            (true, Ok(Verdict::Infected(name))) => assert!(name.contains("Eicar"), "{name}"),
            (false, Ok(Verdict::Clean)) => {}
            (_, other) => panic!("scan {i} (infected: {infected}): {other:?}"),
        }
    }
}

#[tokio::test]
async fn unix_socket() {
    let Some(_) = clamd_addr() else { return };
    let Some(socket) = std::env::var_os("CLAMD_SOCKET").filter(|s| !s.is_empty()) else {
        eprintln!("CLAMD_SOCKET unset: skipping the unix-socket test");
        return;
    };
    let scanner = scanner(ClamdAddress::Unix(socket.into()), 2);
    scanner.ping().await.unwrap();
    assert_clean(scan(&scanner, &random_bytes(MIB, 3), CHUNK).await);
    let mut data = random_bytes(MIB, 4);
    data.extend_from_slice(&eicar());
    assert_eicar(scan(&scanner, &data, CHUNK).await);
}
