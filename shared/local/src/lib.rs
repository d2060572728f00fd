//! Adapters for local mode (`envplane serve`): a SQLite store and a key ring sealed under
//! a master key file.

mod key_file;
mod sqlite;

pub use key_file::{FileKeyRing, KeyFileError};
pub use sqlite::SqliteStore;

use std::path::Path;
use std::sync::Arc;

use envplane_core::ports::{StoreError, SystemClock};
use envplane_core::service::Settings;
use envplane_core::Platform;

/// The files of a local installation inside its data directory.
pub const DATABASE_FILE: &str = "envplane.db";
pub const MASTER_KEY_FILE: &str = "master.key";

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

/// The platform of a local installation: SQLite store and master key file in `data_dir`
/// (created 0700 if missing), `file://` repositories allowed.
pub fn open_platform(data_dir: &Path) -> Result<Platform, OpenError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|source| OpenError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
    let store = SqliteStore::open(&data_dir.join(DATABASE_FILE))?;
    let key_ring = FileKeyRing::open_or_create(&data_dir.join(MASTER_KEY_FILE))?;
    Ok(Platform::new(
        Arc::new(store),
        Arc::new(key_ring),
        Arc::new(SystemClock),
        Settings { local_mode: true },
    ))
}
