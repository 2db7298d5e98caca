//! The durable checkpoint: the newest block the broker acknowledged, the identities of the blocks
//! before it (to detect reorgs across restarts) and, after a reorg, where republishing stopped.
//!
//! It only moves forward: a save that would lower `last_published` keeps the higher value. The file
//! is replaced atomically (write to a temporary file, fsync, rename, fsync the directory), so a
//! crash leaves either the old or the new checkpoint.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chainwatch_core::block::BlockId;
use serde::{Deserialize, Serialize};

/// Blocks remembered for reorg detection.
pub const RECENT_WINDOW: usize = 256;

/// The saved progress of one network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Format version of this file.
    #[serde(default = "one")]
    pub version: u32,
    /// Newest block published and acknowledged.
    pub last_published: u64,
    /// Identities of the newest published blocks, oldest first (at most [`RECENT_WINDOW`]).
    #[serde(default)]
    pub recent: Vec<BlockId>,
    /// After a reorg: the first replaced height. Blocks from there to `last_published` are being
    /// published again; a restart continues from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish_from: Option<u64>,
    /// Newest block published at the confirmation depth (once, or `final` after `seen`): with
    /// `publishSeen`, the blocks after it up to `last_published` were only published as `seen`.
    /// Absent (older checkpoints): `last_published`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_final: Option<u64>,
}

fn one() -> u32 {
    1
}

impl Checkpoint {
    /// Where ingestion resumes.
    pub fn resume_at(&self) -> u64 {
        self.republish_from.unwrap_or(self.last_published + 1)
    }

    /// Newest block published at the confirmation depth.
    pub fn last_final(&self) -> u64 {
        self.last_final.unwrap_or(self.last_published)
    }
}

/// Where checkpoints are kept.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    async fn load(&self) -> std::io::Result<Option<Checkpoint>>;
    /// Saves `cp`; never lowers `last_published` below the saved value.
    async fn save(&self, cp: &Checkpoint) -> std::io::Result<()>;
}

/// A checkpoint file (on the ingester's persistent volume).
pub struct FileCheckpoint {
    path: PathBuf,
    saved: tokio::sync::Mutex<Option<u64>>,
}

impl FileCheckpoint {
    pub fn new(dir: &Path, network: &str) -> Self {
        Self { path: dir.join(format!("{network}.checkpoint.json")), saved: tokio::sync::Mutex::new(None) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl CheckpointStore for FileCheckpoint {
    async fn load(&self) -> std::io::Result<Option<Checkpoint>> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => {
                let cp: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a checkpoint: {e}", self.path.display()),
                    )
                })?;
                *self.saved.lock().await = Some(cp.last_published);
                Ok(Some(cp))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn save(&self, cp: &Checkpoint) -> std::io::Result<()> {
        let mut saved = self.saved.lock().await;
        let mut cp = cp.clone();
        if let Some(prev) = *saved {
            cp.last_published = cp.last_published.max(prev);
        }
        let path = self.path.clone();
        let bytes = serde_json::to_vec_pretty(&cp).expect("a checkpoint serializes");
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(std::io::Error::other)??;
        *saved = Some(cp.last_published);
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A checkpoint kept in memory (`chainwatch dev`).
#[derive(Default)]
pub struct MemoryCheckpoint(tokio::sync::Mutex<Option<Checkpoint>>);

#[async_trait]
impl CheckpointStore for MemoryCheckpoint {
    async fn load(&self) -> std::io::Result<Option<Checkpoint>> {
        Ok(self.0.lock().await.clone())
    }

    async fn save(&self, cp: &Checkpoint) -> std::io::Result<()> {
        let mut slot = self.0.lock().await;
        let mut cp = cp.clone();
        if let Some(prev) = slot.as_ref() {
            cp.last_published = cp.last_published.max(prev.last_published);
        }
        *slot = Some(cp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_moves_backwards_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpoint::new(dir.path(), "net");
        assert_eq!(store.load().await.unwrap(), None);
        store.save(&Checkpoint { last_published: 10, ..Default::default() }).await.unwrap();
        store
            .save(&Checkpoint { last_published: 7, republish_from: Some(5), ..Default::default() })
            .await
            .unwrap();
        let reopened = FileCheckpoint::new(dir.path(), "net");
        let cp = reopened.load().await.unwrap().unwrap();
        assert_eq!(cp.last_published, 10);
        assert_eq!(cp.resume_at(), 5, "a pending republish is where a restart continues");
        reopened.save(&Checkpoint { last_published: 3, ..Default::default() }).await.unwrap();
        assert_eq!(FileCheckpoint::new(dir.path(), "net").load().await.unwrap().unwrap().last_published, 10);
        assert!(!dir.path().join("net.checkpoint.json.tmp").exists());
    }

    #[tokio::test]
    async fn a_corrupt_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.checkpoint.json"), b"{not json").unwrap();
        let err = FileCheckpoint::new(dir.path(), "net").load().await.unwrap_err();
        assert!(err.to_string().contains("is not a checkpoint"));
    }
}
