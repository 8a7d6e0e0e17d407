//! The part of an install that only matters after a crash — the directory fsync that makes
//! the rename durable — started in the background when the rename is done, so that it
//! runs while the new master starts instead of before, and completed (joined) by the
//! pipeline before it reports the commit (DESIGN.md §5: the rename is durable before
//! the commit).

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crate::error::Error;

/// Durability work of an install, done or still running. Dropping a pending one waits
/// for it (its outcome is then ignored): call [`complete`](Self::complete) to learn it.
#[derive(Debug)]
#[must_use = "complete it before reporting the upgrade done"]
pub struct Durability {
    pending: Option<(PathBuf, Work)>,
}

#[derive(Debug)]
enum Work {
    Running(JoinHandle<io::Result<()>>),
    /// Done on the caller's thread (no thread could be started).
    Finished(io::Result<()>),
}

impl Durability {
    /// Nothing left to do.
    pub fn done() -> Durability {
        Durability { pending: None }
    }

    /// Starts fsyncing the directory `dir` (so the renames and links in it survive a
    /// crash) on a thread of its own.
    pub fn sync_directory(dir: impl Into<PathBuf>) -> Durability {
        let dir = dir.into();
        let path = dir.clone();
        match std::thread::Builder::new()
            .name("hotreload-dirsync".into())
            .spawn(move || File::open(&path).and_then(|d| d.sync_all()))
        {
            Ok(handle) => Durability {
                pending: Some((dir, Work::Running(handle))),
            },
            // No thread to be had: do it now (correct, only not overlapped).
            Err(_) => {
                let result = File::open(&dir).and_then(|d| d.sync_all());
                Durability {
                    pending: Some((dir, Work::Finished(result))),
                }
            }
        }
    }

    /// Whether work is still outstanding (not yet [`complete`](Self::complete)d).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Waits for the work to finish and returns its outcome.
    pub fn complete(mut self) -> Result<(), Error> {
        let Some((dir, work)) = self.pending.take() else {
            return Ok(());
        };
        let result = match work {
            Work::Running(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the directory fsync thread panicked"))),
            Work::Finished(result) => result,
        };
        result.map_err(|source| Error::SwapIo {
            action: "sync directory of",
            path: dir,
            source,
        })
    }
}

impl Drop for Durability {
    fn drop(&mut self) {
        if let Some((_, Work::Running(handle))) = self.pending.take() {
            let _ = handle.join();
        }
    }
}
