//! A small clamd client for the INSTREAM protocol, written by hand.
//!
//! Why not the `clamav-client` crate: when clamd refuses a stream (over `StreamMaxLength`) it sends
//! its reply and closes the socket, so a client that is still writing gets EPIPE/ECONNRESET. That
//! crate cannot read the reply after a failed write, so the real reason is lost, and it only offers
//! a coarse `clean()` instead of the reply itself. The protocol is tiny, so it lives here, with the
//! framing and every timeout spelled out.
//!
//! The protocol (`z`-prefixed commands and replies are NUL-terminated):
//!
//! ```text
//! client: "zINSTREAM\0"
//! client: <u32 big-endian length><bytes>     repeated, one frame per chunk
//! client: "\0\0\0\0"                         zero-length frame: end of stream
//! clamd:  "stream: OK\0" | "stream: <signature> FOUND\0" | "<message> ERROR\0"
//! ```
//!
//! Connections: clamd closes an INSTREAM connection after its reply (reuse needs the `IDSESSION`
//! mode, which multiplexes numbered replies and is not worth its complexity here), so every scan
//! opens its own connection, lazily, on its first non-empty chunk. No PING precedes a scan: a dead
//! daemon shows up as a failed connect just as quickly.
//!
//! Failing closed: any failure (connect, write, timeout, reset, size limit, an unexpected reply)
//! is [`ScanError::Unavailable`]; only a well-formed `OK` or `FOUND` reply becomes a [`Verdict`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;

use super::{ScanError, ScanSession, Scanner, Verdict};

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `host:port`, e.g. `localhost:3310`.
    Tcp(String),
    /// clamd's `LocalSocket`.
    Unix(PathBuf),
}

impl std::fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddress::Tcp(addr) => write!(f, "tcp://{addr}"),
            ClamdAddress::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClamdConfig {
    pub address: ClamdAddress,
    /// `clamav_service_timeout`: bounds the wait for a scan slot, the connect, every write and the
    /// reply read (which includes clamd's scanning time), each on its own.
    pub timeout: Duration,
    /// `clamav_max_concurrency`: scans in flight at once; further scans wait for a slot.
    pub max_concurrency: usize,
}

/// The largest frame sent; bigger chunks are split. Large frames keep the per-frame overhead
/// (one header, one syscall) negligible.
const MAX_FRAME: usize = 256 * 1024;
/// Replies are one short line; a longer one is not clamd talking.
const MAX_REPLY: usize = 4096;
/// After a failed write, how long to wait for the reply clamd may have sent before closing.
const REPLY_AFTER_WRITE_ERROR: Duration = Duration::from_secs(1);
const SIZE_LIMIT_EXCEEDED: &str = "clamd stream size limit exceeded (raise StreamMaxLength)";

/// Scans streams with clamd over INSTREAM; at most `max_concurrency` at once.
#[derive(Debug, Clone)]
pub struct ClamdScanner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClamdConfig,
    slots: Arc<Semaphore>,
}

impl ClamdScanner {
    pub fn new(config: ClamdConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        ClamdScanner {
            inner: Arc::new(Inner { config, slots }),
        }
    }

    /// clamd's version line, e.g. `ClamAV 1.4.3/27600/...` (for the start-up log).
    pub async fn version(&self) -> Result<String, ScanError> {
        self.inner.command("zVERSION\0").await
    }
}

#[async_trait]
impl Scanner for ClamdScanner {
    async fn begin(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        Ok(Box::new(ClamdSession {
            inner: Arc::clone(&self.inner),
            state: State::NotConnected,
        }))
    }

    async fn ping(&self) -> Result<(), ScanError> {
        match self.inner.command("zPING\0").await?.as_str() {
            "PONG" => Ok(()),
            other => Err(unavailable(format!("unexpected reply to PING: {other:?}"))),
        }
    }

    fn enabled(&self) -> bool {
        true
    }
}

/// A byte stream to clamd, over TCP or a unix socket.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

impl Inner {
    fn timeout(&self) -> Duration {
        self.config.timeout
    }

    async fn connect(&self) -> Result<Box<dyn Connection>, ScanError> {
        let address = &self.config.address;
        let connecting = async {
            Ok::<Box<dyn Connection>, std::io::Error>(match address {
                ClamdAddress::Tcp(addr) => {
                    let stream = TcpStream::connect(addr.as_str()).await?;
                    // Frames are written whole; do not let Nagle hold back the short terminator.
                    stream.set_nodelay(true)?;
                    Box::new(stream)
                }
                #[cfg(unix)]
                ClamdAddress::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
                #[cfg(not(unix))]
                ClamdAddress::Unix(_) => {
                    return Err(std::io::Error::other("unix sockets are not supported here"))
                }
            })
        };
        match timeout(self.timeout(), connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(unavailable(format!(
                "cannot connect to clamd at {address}: {err}"
            ))),
            Err(_) => Err(unavailable(format!(
                "timed out connecting to clamd at {address}"
            ))),
        }
    }

    /// A one-shot command (`zPING\0`, `zVERSION\0`): its reply, NUL and whitespace trimmed.
    async fn command(&self, command: &str) -> Result<String, ScanError> {
        let mut conn = self.connect().await?;
        write_all(&mut conn, &mut command.as_bytes(), self.timeout()).await?;
        read_reply(&mut conn, self.timeout()).await
    }
}

struct ClamdSession {
    inner: Arc<Inner>,
    state: State,
}

enum State {
    /// Nothing fed yet: no connection, no slot.
    NotConnected,
    /// `zINSTREAM` sent. The slot is held until the session ends; dropping the session closes
    /// the connection, which makes clamd abandon the stream.
    Streaming {
        conn: Box<dyn Connection>,
        slot: OwnedSemaphorePermit,
    },
    /// A write failed or was cancelled; the connection and slot are released and every later
    /// call gets this error.
    Failed(ScanError),
}

impl Inner {
    /// Takes a scan slot, connects and starts the INSTREAM command.
    async fn start_stream(&self) -> Result<State, ScanError> {
        // The wait for a slot is bounded too: a stuck daemon must not queue scans forever.
        let slot = match timeout(self.timeout(), Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => return Err(unavailable("clamd scan slots closed".to_owned())),
            Err(_) => {
                return Err(unavailable(format!(
                    "timed out waiting for a free clamd scan slot ({} in use)",
                    self.config.max_concurrency
                )))
            }
        };
        let mut conn = self.connect().await?;
        write_all(&mut conn, &mut &b"zINSTREAM\0"[..], self.timeout()).await?;
        Ok(State::Streaming { conn, slot })
    }
}

impl ClamdSession {
    fn fail(&mut self, err: ScanError) -> Result<(), ScanError> {
        self.state = State::Failed(err.clone());
        Err(err)
    }
}

#[async_trait]
impl ScanSession for ClamdSession {
    async fn feed(&mut self, mut chunk: Bytes) -> Result<(), ScanError> {
        if chunk.is_empty() {
            return Ok(());
        }
        // The state is taken out while writing: if this future is dropped mid-frame, the session
        // stays failed instead of sending clamd a torn frame on the next feed.
        let cancelled = unavailable("an earlier feed was cancelled mid-write".to_owned());
        let mut state = std::mem::replace(&mut self.state, State::Failed(cancelled));
        if let State::NotConnected = state {
            state = self
                .inner
                .start_stream()
                .await
                .unwrap_or_else(State::Failed);
        }
        let (mut conn, slot) = match state {
            State::Streaming { conn, slot } => (conn, slot),
            State::Failed(err) => return self.fail(err),
            State::NotConnected => unreachable!("started above"),
        };
        let timeout = self.inner.timeout();
        while !chunk.is_empty() {
            let data = chunk.split_to(chunk.len().min(MAX_FRAME));
            let header = (data.len() as u32).to_be_bytes();
            let frame = &mut Buf::chain(&header[..], data);
            if let Err(err) = write_all(&mut conn, frame, timeout).await {
                let err = explain_write_failure(&mut conn, err).await;
                return self.fail(err);
            }
        }
        self.state = State::Streaming { conn, slot };
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<Verdict, ScanError> {
        let timeout = self.inner.timeout();
        // The slot is held until the reply is in: clamd scans after the terminator.
        let (mut conn, _slot) = match self.state {
            // Nothing was fed: empty content is clean without asking.
            State::NotConnected => return Ok(Verdict::Clean),
            State::Failed(err) => return Err(err),
            State::Streaming { conn, slot } => (conn, slot),
        };
        if let Err(err) = write_all(&mut conn, &mut &[0u8; 4][..], timeout).await {
            return Err(explain_write_failure(&mut conn, err).await);
        }
        let verdict = parse_reply(&read_reply(&mut conn, timeout).await?);
        tracing::debug!(?verdict, "clamd verdict");
        verdict
    }
}

/// Writes the whole buffer (vectored where the stream supports it), bounded by `limit`.
async fn write_all(
    conn: &mut Box<dyn Connection>,
    buf: &mut impl Buf,
    limit: Duration,
) -> Result<(), ScanError> {
    let writing = async {
        conn.write_all_buf(buf).await?;
        conn.flush().await
    };
    match timeout(limit, writing).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(unavailable(format!("writing to clamd failed: {err}"))),
        Err(_) => Err(unavailable("timed out writing to clamd".to_owned())),
    }
}

/// Reads one reply up to its NUL (or the end of the stream), bounded by `limit`.
async fn read_reply(conn: &mut Box<dyn Connection>, limit: Duration) -> Result<String, ScanError> {
    let reading = async {
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
                reply.extend_from_slice(&buf[..end]);
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if reply.len() > MAX_REPLY {
                return Err(std::io::Error::other("reply too long"));
            }
        }
        Ok(reply)
    };
    match timeout(limit, reading).await {
        Ok(Ok(reply)) if reply.is_empty() => Err(unavailable(
            "clamd closed the connection without a reply".to_owned(),
        )),
        Ok(Ok(reply)) => Ok(String::from_utf8_lossy(&reply).trim().to_owned()),
        Ok(Err(err)) => Err(unavailable(format!("reading clamd's reply failed: {err}"))),
        Err(_) => Err(unavailable(
            "timed out waiting for clamd's reply".to_owned(),
        )),
    }
}

/// A write failed, most likely because clamd refused the stream, replied and closed. Its reply
/// (if it can still be read) names the real reason; either way the outcome is `Unavailable`.
async fn explain_write_failure(conn: &mut Box<dyn Connection>, write_err: ScanError) -> ScanError {
    let Ok(reply) = read_reply(conn, REPLY_AFTER_WRITE_ERROR).await else {
        return write_err;
    };
    match parse_reply(&reply) {
        Err(refusal) => refusal,
        // A verdict on a stream that was never finished is not a verdict.
        Ok(_) => unavailable(format!(
            "clamd closed the connection mid-stream, replying {reply:?}"
        )),
    }
}

/// Interprets one INSTREAM reply (without its NUL).
fn parse_reply(reply: &str) -> Result<Verdict, ScanError> {
    let reply = reply.trim_end_matches('\0').trim();
    if reply == "stream: OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(name) = reply
        .strip_prefix("stream: ")
        .and_then(|rest| rest.strip_suffix(" FOUND"))
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        // With `AlertExceedsMax`, clamd reports content it could not scan completely (over
        // MaxFileSize, MaxScanSize, ...) as this pseudo-signature. That is a scan failure, not an
        // infection (SPEC §5).
        if name.starts_with("Heuristics.Limits.Exceeded") {
            return Err(unavailable(format!(
                "clamd could not scan the whole stream ({name}; raise MaxFileSize/MaxScanSize)"
            )));
        }
        return Ok(Verdict::Infected(name.to_owned()));
    }
    if reply.starts_with("INSTREAM size limit exceeded") {
        return Err(unavailable(SIZE_LIMIT_EXCEEDED.to_owned()));
    }
    if reply.ends_with("ERROR") {
        return Err(unavailable(format!("clamd error: {reply}")));
    }
    Err(unavailable(format!("unexpected clamd reply: {reply:?}")))
}

fn unavailable(reason: String) -> ScanError {
    ScanError::Unavailable(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    fn reason(result: Result<Verdict, ScanError>) -> String {
        match result {
            Err(err) => why(err),
            Ok(verdict) => panic!("expected Unavailable, got {verdict:?}"),
        }
    }

    fn why(err: ScanError) -> String {
        match err {
            ScanError::Unavailable(reason) => reason,
        }
    }

    fn verdict(result: Result<Verdict, ScanError>) -> Verdict {
        result.unwrap_or_else(|err| panic!("expected a verdict, got {err:?}"))
    }

    #[test]
    fn parses_replies() {
        assert_eq!(verdict(parse_reply("stream: OK")), Verdict::Clean);
        assert_eq!(verdict(parse_reply("stream: OK\0")), Verdict::Clean);
        assert_eq!(
            verdict(parse_reply("stream: Eicar-Test-Signature FOUND")),
            Verdict::Infected("Eicar-Test-Signature".into())
        );
        assert_eq!(
            verdict(parse_reply(
                "stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0"
            )),
            Verdict::Infected("Eicar-Test-Signature.UNOFFICIAL".into())
        );
        assert_eq!(
            reason(parse_reply("INSTREAM size limit exceeded. ERROR")),
            SIZE_LIMIT_EXCEEDED
        );
        assert!(reason(parse_reply(
            "stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND"
        ))
        .contains("MaxFileSize"));
        assert!(reason(parse_reply("stream: lstat() failed ERROR")).contains("clamd error"));
        for junk in [
            "",
            "stream:",
            "stream:  FOUND",
            "PONG",
            "stream: OK trailing",
            "OK",
        ] {
            assert!(parse_reply(junk).is_err(), "{junk:?} must not be a verdict");
        }
    }

    /// What a fake clamd received on one connection.
    #[derive(Debug, Default)]
    struct Received {
        command: Vec<u8>,
        frames: Vec<Vec<u8>>,
        terminated: bool,
    }

    /// Reads `zINSTREAM\0` and frames until the terminator (or EOF, or `stop_after` bytes).
    async fn read_instream(
        conn: &mut (impl AsyncRead + Unpin),
        stop_after: Option<usize>,
    ) -> Received {
        let mut got = Received::default();
        let mut command = [0u8; 10];
        conn.read_exact(&mut command).await.unwrap();
        got.command = command.to_vec();
        let mut total = 0;
        loop {
            let mut len = [0u8; 4];
            if conn.read_exact(&mut len).await.is_err() {
                return got;
            }
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 {
                got.terminated = true;
                return got;
            }
            let mut frame = vec![0u8; len];
            conn.read_exact(&mut frame).await.unwrap();
            total += len;
            got.frames.push(frame);
            if stop_after.is_some_and(|limit| total >= limit) {
                return got;
            }
        }
    }

    fn scanner(addr: String, timeout_ms: u64) -> ClamdScanner {
        scanner_with(addr, timeout_ms, 4)
    }

    fn scanner_with(addr: String, timeout_ms: u64, max_concurrency: usize) -> ClamdScanner {
        ClamdScanner::new(ClamdConfig {
            address: ClamdAddress::Tcp(addr),
            timeout: Duration::from_millis(timeout_ms),
            max_concurrency,
        })
    }

    /// A fake clamd that handles one connection with `handler` and returns what it received.
    async fn fake_clamd<F, Fut>(handler: F) -> (String, tokio::task::JoinHandle<Received>)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Received> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            handler(conn).await
        });
        (addr, task)
    }

    #[tokio::test]
    async fn frames_the_stream_and_reads_a_clean_reply() {
        let (addr, server) = fake_clamd(|mut conn| async move {
            let got = read_instream(&mut conn, None).await;
            conn.write_all(b"stream: OK\0").await.unwrap();
            got
        })
        .await;
        let data: Vec<u8> = (0..600 * 1024).map(|i| (i % 251) as u8).collect();
        let mut session = scanner(addr, 5_000).begin().await.unwrap();
        session.feed(Bytes::from_static(b"hello ")).await.unwrap();
        session.feed(Bytes::new()).await.unwrap();
        session.feed(Bytes::from(data.clone())).await.unwrap();
        assert_eq!(verdict(session.finish().await), Verdict::Clean);

        let got = server.await.unwrap();
        assert_eq!(got.command, b"zINSTREAM\0");
        assert!(got.terminated);
        let sizes: Vec<usize> = got.frames.iter().map(Vec::len).collect();
        assert_eq!(sizes, [6, MAX_FRAME, MAX_FRAME, 600 * 1024 - 2 * MAX_FRAME]);
        let mut expected = b"hello ".to_vec();
        expected.extend_from_slice(&data);
        assert_eq!(got.frames.concat(), expected);
    }

    #[tokio::test]
    async fn reports_an_infection() {
        let (addr, _server) = fake_clamd(|mut conn| async move {
            let got = read_instream(&mut conn, None).await;
            conn.write_all(b"stream: Some.Threat FOUND\0")
                .await
                .unwrap();
            got
        })
        .await;
        let mut session = scanner(addr, 5_000).begin().await.unwrap();
        session.feed(Bytes::from_static(b"bad")).await.unwrap();
        assert_eq!(
            verdict(session.finish().await),
            Verdict::Infected("Some.Threat".into())
        );
    }

    #[tokio::test]
    async fn refusal_mid_stream_is_unavailable_with_the_reason() {
        // Like clamd over StreamMaxLength: reply and close while the client is still writing.
        let (addr, _server) = fake_clamd(|mut conn| async move {
            let got = read_instream(&mut conn, Some(64 * 1024)).await;
            conn.write_all(b"INSTREAM size limit exceeded. ERROR\0")
                .await
                .unwrap();
            got
        })
        .await;
        let mut session = scanner(addr, 5_000).begin().await.unwrap();
        let chunk = Bytes::from(vec![0u8; 1024 * 1024]);
        let mut result = Ok(Verdict::Clean);
        for _ in 0..64 {
            if let Err(err) = session.feed(chunk.clone()).await {
                result = Err(err);
                break;
            }
        }
        assert!(
            result.is_err(),
            "64 MiB cannot all fit in the socket buffers"
        );
        // The write fails with EPIPE/ECONNRESET, yet the reply sent before the close is still
        // readable (Linux keeps received data after a reset), so the real reason is reported.
        assert_eq!(reason(result), SIZE_LIMIT_EXCEEDED);
    }

    #[tokio::test]
    async fn close_without_reply_is_unavailable() {
        let (addr, _server) = fake_clamd(|mut conn| async move {
            read_instream(&mut conn, None).await
            // dropped: closed without a reply
        })
        .await;
        let mut session = scanner(addr, 5_000).begin().await.unwrap();
        session.feed(Bytes::from_static(b"data")).await.unwrap();
        assert!(reason(session.finish().await).contains("without a reply"));
    }

    #[tokio::test]
    async fn silent_daemon_times_out() {
        let (addr, _server) = fake_clamd(|mut conn| async move {
            let got = read_instream(&mut conn, None).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            got
        })
        .await;
        let mut session = scanner(addr, 200).begin().await.unwrap();
        session.feed(Bytes::from_static(b"data")).await.unwrap();
        let started = std::time::Instant::now();
        assert!(reason(session.finish().await).contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn daemon_that_stops_reading_times_out_on_write() {
        let (addr, _server) = fake_clamd(|conn| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(conn);
            Received::default()
        })
        .await;
        let mut session = scanner(addr, 200).begin().await.unwrap();
        let chunk = Bytes::from(vec![0u8; 1024 * 1024]);
        let mut outcome = None;
        for _ in 0..256 {
            if let Err(err) = session.feed(chunk.clone()).await {
                outcome = Some(err);
                break;
            }
        }
        let reason = why(outcome.expect("socket buffers never filled up"));
        assert!(reason.contains("timed out"), "{reason}");
        // The failure sticks to the session.
        assert!(session.finish().await.is_err());
    }

    #[tokio::test]
    async fn a_cancelled_feed_fails_the_session_and_frees_its_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let scanner = scanner_with(addr, 5_000, 1);
        let mut session = scanner.begin().await.unwrap();
        // Nobody reads: the write blocks once the socket buffers are full, and is then cancelled.
        let big = Bytes::from(vec![0u8; 64 * 1024 * 1024]);
        let cancelled = timeout(Duration::from_millis(200), session.feed(big)).await;
        assert!(cancelled.is_err(), "the feed should still be blocked");
        let reason = why(session.feed(Bytes::from_static(b"more")).await.unwrap_err());
        assert!(reason.contains("cancelled"), "{reason}");
        // The only slot is free again.
        let mut other = scanner.begin().await.unwrap();
        other.feed(Bytes::from_static(b"x")).await.unwrap();
        drop(listener);
    }

    #[tokio::test]
    async fn empty_stream_is_clean_without_connecting() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let session = scanner(addr, 5_000).begin().await.unwrap();
        assert_eq!(verdict(session.finish().await), Verdict::Clean);
        let accepted = timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "an empty scan must not connect");
    }

    #[tokio::test]
    async fn unreachable_daemon_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let scanner = scanner(addr, 1_000);
        let mut session = scanner.begin().await.unwrap();
        let reason = why(session.feed(Bytes::from_static(b"x")).await.unwrap_err());
        assert!(reason.contains("cannot connect"), "{reason}");
        assert_eq!(self::reason(session.finish().await), reason);
        assert!(scanner.ping().await.is_err());
    }

    #[tokio::test]
    async fn waiting_for_a_scan_slot_is_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let scanner = scanner_with(addr, 200, 1);
        let mut first = scanner.begin().await.unwrap();
        first.feed(Bytes::from_static(b"a")).await.unwrap(); // holds the only slot
        let mut second = scanner.begin().await.unwrap();
        let reason = why(second.feed(Bytes::from_static(b"b")).await.unwrap_err());
        assert!(reason.contains("scan slot"), "{reason}");
        drop(first); // releases the slot
        let mut third = scanner.begin().await.unwrap();
        third.feed(Bytes::from_static(b"c")).await.unwrap();
        drop(listener);
    }

    #[tokio::test]
    async fn concurrency_is_capped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let open = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (open2, peak2) = (Arc::clone(&open), Arc::clone(&peak));
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let (open, peak) = (Arc::clone(&open2), Arc::clone(&peak2));
                tokio::spawn(async move {
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    read_instream(&mut conn, None).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                    conn.write_all(b"stream: OK\0").await.unwrap();
                });
            }
        });
        let scanner = scanner_with(addr, 5_000, 3);
        let scans = (0..12).map(|_| {
            let scanner = scanner.clone();
            tokio::spawn(async move {
                let mut session = scanner.begin().await.unwrap();
                session.feed(Bytes::from_static(b"data")).await.unwrap();
                session.finish().await
            })
        });
        for scan in futures::future::join_all(scans).await {
            assert_eq!(verdict(scan.unwrap()), Verdict::Clean);
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= 3, "{peak} scans at once");
    }

    #[tokio::test]
    async fn ping_and_version() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut command = Vec::new();
                let mut byte = [0u8; 1];
                while conn.read_exact(&mut byte).await.is_ok() && byte[0] != 0 {
                    command.push(byte[0]);
                }
                let reply: &[u8] = match command.as_slice() {
                    b"zPING" => b"PONG\0",
                    b"zVERSION" => b"ClamAV 1.4.3/27600/Mon Jan 1 00:00:00 2024\0",
                    _ => b"UNKNOWN COMMAND\0",
                };
                conn.write_all(reply).await.unwrap();
            }
        });
        let scanner = scanner(addr, 1_000);
        scanner.ping().await.unwrap();
        assert!(scanner.version().await.unwrap().starts_with("ClamAV 1.4.3"));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn speaks_over_a_unix_socket() {
        let dir = std::env::temp_dir().join(format!("satchel-clamd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clamd.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let got = read_instream(&mut conn, None).await;
            conn.write_all(b"stream: OK\0").await.unwrap();
            got
        });
        let scanner = ClamdScanner::new(ClamdConfig {
            address: ClamdAddress::Unix(path.clone()),
            timeout: Duration::from_secs(5),
            max_concurrency: 1,
        });
        let mut session = scanner.begin().await.unwrap();
        session
            .feed(Bytes::from_static(b"over unix"))
            .await
            .unwrap();
        assert_eq!(verdict(session.finish().await), Verdict::Clean);
        assert_eq!(server.await.unwrap().frames.concat(), b"over unix");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
