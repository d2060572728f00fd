//! The Artifacts port on files: `<dir>/<org>/<key>`, owner-only, written atomically.
//! What is stored here is already sealed by the key ring.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use envplane_core::ports::{ArtifactError, Artifacts};

pub struct FileArtifacts {
    root: PathBuf,
}

impl FileArtifacts {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Keys are made by the platform from ids; anything that could climb out is refused.
    fn path(&self, org_id: &str, key: &str) -> Result<PathBuf, ArtifactError> {
        let safe = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };
        if !safe(org_id) || !key.split('/').all(safe) {
            return Err(ArtifactError::Backend(format!(
                "invalid artifact key {key:?}"
            )));
        }
        Ok(self.root.join(org_id).join(key))
    }
}

fn io_error(error: std::io::Error) -> ArtifactError {
    ArtifactError::Backend(error.to_string())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("artifact paths have a parent");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[async_trait]
impl Artifacts for FileArtifacts {
    async fn put(&self, org_id: &str, key: &str, bytes: Vec<u8>) -> Result<(), ArtifactError> {
        let path = self.path(org_id, key)?;
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| ArtifactError::Backend(e.to_string()))?
            .map_err(io_error)
    }

    async fn get(&self, org_id: &str, key: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        let path = self.path(org_id, key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn artifacts_round_trip_and_stay_private() {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = FileArtifacts::new(dir.path().to_path_buf());
        artifacts
            .put("org_1", "state/env_1/1", b"one".to_vec())
            .await
            .unwrap();
        artifacts
            .put("org_1", "state/env_1/1", b"two".to_vec())
            .await
            .unwrap();
        assert_eq!(
            artifacts
                .get("org_1", "state/env_1/1")
                .await
                .unwrap()
                .unwrap(),
            b"two"
        );
        assert!(artifacts
            .get("org_2", "state/env_1/1")
            .await
            .unwrap()
            .is_none());
        let mode = fs::metadata(dir.path().join("org_1/state/env_1/1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        for bad in ["../x", "a/../../b", "", "a//b", "/abs"] {
            assert!(artifacts.put("org_1", bad, vec![]).await.is_err(), "{bad}");
        }
        assert!(artifacts.get("..", "x").await.is_err());
    }
}
