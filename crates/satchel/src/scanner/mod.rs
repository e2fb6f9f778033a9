//! Virus scanning: every byte that enters is scanned as one stream before it is kept (SPEC §5).
//!
//! The ingest pipeline opens a [`ScanSession`] per write, feeds it the same chunks it hashes and
//! stores, and asks for the verdict when the stream ends. A scanner that cannot give a verdict
//! fails closed with [`ScanError::Unavailable`]: never reported as an infection, never accepted.

mod clamd;

pub use clamd::{ClamdAddress, ClamdConfig, ClamdScanner};

use async_trait::async_trait;
use bytes::Bytes;

/// The scanner's answer for one complete stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The signature name, e.g. `Eicar-Test-Signature`.
    Infected(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ScanError {
    /// Unreachable, timed out, connection reset, over the daemon's stream limit, or an
    /// unexpected reply. Retryable; the content must not be kept.
    #[error("virus scanner unavailable: {0}")]
    Unavailable(String),
}

impl From<ScanError> for crate::Error {
    fn from(err: ScanError) -> Self {
        crate::Error::new(crate::ErrorCode::ScannerUnavailable, err.to_string())
    }
}

#[async_trait]
pub trait Scanner: Send + Sync + 'static {
    /// Starts the scan of one stream. Cheap: implementations connect lazily on the first chunk,
    /// so empty content costs no round-trip.
    async fn begin(&self) -> Result<Box<dyn ScanSession>, ScanError>;

    /// Whether the scanner answers (for readiness checks and the start-up check only).
    async fn ping(&self) -> Result<(), ScanError>;

    /// Whether scanning is actually performed (false for the disabled pass-through).
    fn enabled(&self) -> bool;
}

/// One stream being scanned.
#[async_trait]
pub trait ScanSession: Send {
    /// Feeds the next chunk of the stream, in order.
    async fn feed(&mut self, chunk: Bytes) -> Result<(), ScanError>;

    /// Ends the stream and waits for the verdict.
    async fn finish(self: Box<Self>) -> Result<Verdict, ScanError>;
}

/// Scanning disabled (`clamav_service_enabled = false`): everything is clean.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoScan;

#[async_trait]
impl Scanner for NoScan {
    async fn begin(&self) -> Result<Box<dyn ScanSession>, ScanError> {
        Ok(Box::new(NoScan))
    }
    async fn ping(&self) -> Result<(), ScanError> {
        Ok(())
    }
    fn enabled(&self) -> bool {
        false
    }
}

#[async_trait]
impl ScanSession for NoScan {
    async fn feed(&mut self, _chunk: Bytes) -> Result<(), ScanError> {
        Ok(())
    }
    async fn finish(self: Box<Self>) -> Result<Verdict, ScanError> {
        Ok(Verdict::Clean)
    }
}
