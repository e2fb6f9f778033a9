//! Domain types that parse at the boundary, so the inside never re-checks.

mod file_name;
mod path;
mod record;
mod session;

pub use file_name::FileName;
pub use path::{FolderPath, PathScope, VirtualPath, MAX_PATH_BYTES, MAX_SEGMENT_BYTES};
pub use record::{FileRecord, Workspace};
pub use session::SessionId;
