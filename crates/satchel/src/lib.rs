//! Satchel: a persistent file workspace per user, and one call (`store_media_file`) that turns
//! any file reference into what a processing step needs.

pub mod catalog;
pub mod domain;
pub mod error;
pub mod maintenance;
pub mod media;
pub mod scanner;
pub mod signing;

pub use error::{Error, ErrorCode, ErrorDetail, Result};
pub mod config;
pub mod ingest;
pub mod storage;
pub mod workspace;

pub use config::Config;
pub use workspace::{
    DownloadUrl, FilePage, ListOptions, OnConflict, Satchel, Usage, WorkspaceManager, WriteOptions,
    WriteOutcome,
};
