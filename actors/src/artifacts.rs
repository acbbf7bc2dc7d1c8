//! Artifacts: task payloads and results, content-addressed by sha256.
//!
//! Small artifacts (≤ `inline_max` bytes, default 16 KiB) are stored inline in SQLite, so they are
//! durable in the same group commit as the task event that references them. Larger ones are
//! written to `<artifact-dir>/<id>.bin` and fsynced *before* the row that references them is
//! committed, so a committed row never points at a missing or partial file.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::clock;
use crate::ids;
use crate::model::ArtifactMeta;

/// Default threshold above which artifact bytes go to a file instead of the database.
pub const DEFAULT_INLINE_MAX: usize = 16 * 1024;

/// Where an artifact's bytes are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArtifactBody {
    /// In the `artifacts.content` column.
    Inline(Vec<u8>),
    /// In a file, path relative to the artifact directory.
    File(String),
}

/// An artifact ready to be recorded (bytes already durable if they live in a file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewArtifact {
    pub meta: ArtifactMeta,
    pub body: ArtifactBody,
}

/// Failure to store or read artifact bytes.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("artifact writer stopped: {0}")]
    Join(String),
}

/// The artifact directory and the inline threshold.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    /// Directory for artifacts larger than `inline_max`.
    dir: PathBuf,
    /// Largest artifact kept inline in SQLite.
    inline_max: usize,
}

impl ArtifactStore {
    /// Creates the directory if needed.
    pub fn open(dir: impl Into<PathBuf>, inline_max: usize) -> Result<Self, ArtifactError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| ArtifactError::Io { path: dir.clone(), source })?;
        Ok(ArtifactStore { dir, inline_max })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Prepares an artifact from `bytes`: hashes it and, if large, writes and fsyncs its file.
    pub async fn prepare(&self, bytes: Vec<u8>, media_type: &str) -> Result<NewArtifact, ArtifactError> {
        let artifact_id = ids::new_id();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let meta = ArtifactMeta {
            artifact_id: artifact_id.clone(),
            media_type: media_type.to_owned(),
            size_bytes: bytes.len() as u64,
            sha256,
            created_at: clock::now_rfc3339(),
        };
        if bytes.len() <= self.inline_max {
            return Ok(NewArtifact { meta, body: ArtifactBody::Inline(bytes) });
        }
        let relative = format!("{artifact_id}.bin");
        let path = self.dir.join(&relative);
        tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(|e| ArtifactError::Join(e.to_string()))??;
        Ok(NewArtifact { meta, body: ArtifactBody::File(relative) })
    }

    /// Reads an artifact's bytes.
    pub async fn read(&self, body: ArtifactBody) -> Result<Vec<u8>, ArtifactError> {
        match body {
            ArtifactBody::Inline(bytes) => Ok(bytes),
            ArtifactBody::File(relative) => {
                let path = self.dir.join(relative);
                tokio::fs::read(&path).await.map_err(|source| ArtifactError::Io { path, source })
            }
        }
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    use std::io::Write;
    let io = |source| ArtifactError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::create(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_inline_large_on_disk() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = ArtifactStore::open(dir.path(), 8)?;
        let small = store.prepare(b"1234".to_vec(), "application/json").await?;
        assert_eq!(small.body, ArtifactBody::Inline(b"1234".to_vec()));
        assert_eq!(small.meta.sha256, hex::encode(Sha256::digest(b"1234")));
        let large = store.prepare(b"0123456789".to_vec(), "application/json").await?;
        let ArtifactBody::File(rel) = &large.body else { return Err("expected file".into()) };
        assert_eq!(std::fs::read(dir.path().join(rel))?, b"0123456789");
        assert_eq!(store.read(large.body.clone()).await?, b"0123456789");
        Ok(())
    }
}
