//! Adapters for local mode (`envplane serve`): a SQLite store and queue, sealed files
//! for artifacts, a key ring under a master key file, and the bubblewrap launcher; and
//! the loops that run them in one process.

mod artifacts;
mod installation;
mod key_file;
mod launcher;
mod network;
mod notifications;
mod queue;
mod reports;
mod seccomp;
mod sqlite;

pub use artifacts::FileArtifacts;
pub use installation::{open, Background, Installation, LocalConfig, OpenError};
pub use key_file::{FileKeyRing, KeyFileError};
pub use launcher::{Isolation, LauncherConfig, LocalLauncher, SandboxExit};
pub use notifications::ChannelNotifier;
pub use queue::{Delivery, SqliteQueue};
pub use reports::ChannelReports;
pub use sqlite::SqliteStore;

/// The files of a local installation inside its data directory.
pub const DATABASE_FILE: &str = "envplane.db";
pub const MASTER_KEY_FILE: &str = "master.key";
/// Where `envplane serve` saves the operator's key on first start.
pub const ADMIN_KEY_FILE: &str = "admin-key";
pub const ARTIFACTS_DIR: &str = "artifacts";
pub const TOOLS_DIR: &str = "tools";
