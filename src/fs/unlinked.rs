//! Files unlinked while open: the name goes at once, the bytes stay until the last close.
//!
//! On a disk, `unlink` (or a `rename` over the file) removes the name, and every open
//! descriptor keeps reading and writing the same file until its last close, with `st_nlink` 0
//! (`tmpfile()`-style scratch files, `tail -f` on a rotated log, package managers). S3 deletes
//! the object at once, so the mount keeps what the descriptors need in one of two ways, chosen
//! by size when the file has no local copy yet:
//!
//! - **fetched** — up to [`FETCH_AT_UNLINK_MAX`] bytes, or whenever the key is about to be
//!   written again (a rename over the file, a new file of that name, a rename or `rmdir` of its
//!   directory): what is left of the version the descriptors read is copied into a staging
//!   file (through the data cache, pinned to its ETag), and the object is deleted at once. A
//!   file that already has a staging file (written or truncated) needs nothing fetched.
//! - **kept** — above it: the object stays on the server until the last close, which deletes
//!   it; meanwhile the mount hides its name from its lookups and listings (also after the
//!   metadata TTL). Reads go on by ranged GETs of the pinned version, as before the unlink.
//!
//! Either way nothing is uploaded for the file any more, and its staging file is removed from
//! the cache dir at once (the descriptors keep it open), so a crash never brings the bytes
//! back as an `unsaved/` copy. What a crash leaves: a fetched file is gone from the server, as
//! on a disk; a kept one is still there with its name (the unlink did not reach the server),
//! as are the objects of files still open at an unmount.
//!
//! Lock order (see [`super::open_files`]): the map of kept objects comes last, taken only to
//! look up, insert or remove.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::error::{FsError, FsResult};
use super::fetch::ObjectSource;
use super::open_file::{errno_of, OpenFile, Staging};
use super::staging::errno_is_disk_full;
use super::S3Fs;

/// Largest file whose remaining bytes are fetched at its unlink (one GET's worth, the size
/// below which an upload is one PUT). Above, fetching bytes the reader may never read costs
/// more than a DELETE at the last close, and an unlink would wait for the whole download.
pub const FETCH_AT_UNLINK_MAX: u64 = 16 * 1024 * 1024;

/// Bytes copied per ranged read while fetching an unlinked file (the read-ahead's part size).
const FETCH_CHUNK: u64 = 8 * 1024 * 1024;

/// What becomes of the object of a name removed from under an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detached {
    /// Nothing open needs it: delete it now (or let the replacing write overwrite it).
    Free,
    /// Kept for the open descriptors until the last close, which deletes it.
    Kept,
}

/// The objects kept for unlinked open files, by key (their names are hidden).
#[derive(Debug, Default)]
pub struct KeptObjects {
    keys: Mutex<HashMap<String, u64>>,
}

impl KeptObjects {
    /// True if `key` is kept for an unlinked open file: its name is hidden.
    pub fn is_hidden(&self, key: &str) -> bool {
        self.keys.lock().contains_key(key)
    }

    /// The keys kept under `prefix` (all with ""), with their inodes.
    pub fn under(&self, prefix: &str) -> Vec<(String, u64)> {
        self.keys
            .lock()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, i)| (k.clone(), *i))
            .collect()
    }

    fn insert(&self, key: String, ino: u64) {
        self.keys.lock().insert(key, ino);
    }

    fn remove(&self, key: &str) {
        self.keys.lock().remove(key);
    }
}

impl S3Fs {
    /// The name `key` of `ino` is being removed (an unlink: `may_keep`) or replaced (a rename
    /// over it, a new file there): if the file is open, it is marked unlinked (never uploaded
    /// again) and keeps its bytes — fetched now, or its object kept until the last close when
    /// `may_keep` and the file is large (see the module documentation).
    pub(crate) fn detach_open_file(
        &self,
        ino: u64,
        key: &str,
        may_keep: bool,
    ) -> FsResult<Detached> {
        let Some(f) = self.open_files.get(ino) else {
            return Ok(Detached::Free);
        };
        let mut of = f.lock();
        if of.is_unused() {
            return Ok(Detached::Free);
        }
        if of.staging().is_none() && of.version().exists() {
            if may_keep && of.version().size() > FETCH_AT_UNLINK_MAX {
                log::debug!(
                    "{key}: unlinked while open ({} bytes): kept until the last close",
                    of.version().size()
                );
                return Ok(self.keep_for_descriptors(&mut of, ino, key));
            }
            // Before the file is marked: a fetch that fails leaves it as it was.
            match self.fetch_rest(&mut of, key) {
                Ok(()) => {}
                // No room for the copy in the cache dir: an unlink never fails for want of
                // space, as on a disk (and a full disk is when one deletes files).
                Err(e) if may_keep && errno_is_disk_full(e.errno) => {
                    log::info!("{key}: unlinked while open, kept until the last close: {e}");
                    return Ok(self.keep_for_descriptors(&mut of, ino, key));
                }
                Err(e) => return Err(e),
            }
        }
        of.mark_unlinked();
        Ok(Detached::Free)
    }

    /// Keep the object at `key` for the descriptors of `of` until its last close, its name
    /// hidden meanwhile.
    fn keep_for_descriptors(&self, of: &mut OpenFile, ino: u64, key: &str) -> Detached {
        of.mark_unlinked();
        of.keep_object(key.to_string());
        self.kept.insert(key.to_string(), ino);
        Detached::Kept
    }

    /// The name `detach_open_file` marked `ino`'s open file for is gone from the server
    /// (deleted, or replaced by a rename's copy): see [`OpenFile::unlinked_for_good`]. A copy
    /// of it kept under `unsaved/` after a failed upload goes too: `--recover` would bring the
    /// removed file back, or put it over what was written under its name since.
    pub(crate) fn detached_for_good(&self, ino: u64) {
        if let Some(f) = self.open_files.get(ino) {
            let mut of = f.lock();
            of.unlinked_for_good();
            if let Some(p) = of.take_saved() {
                super::unsaved::remove(&p);
                log::info!(
                    "removed while open: dropped its unsaved copy {}",
                    p.display()
                );
            }
        }
    }

    /// The removal of the name `detach_open_file` marked `ino`'s open file for failed (a
    /// `Free` detach: nothing was kept): the name stays, and the file is uploaded at close
    /// again. Never called while a rename holds the gate closed (it takes the file's lock).
    pub(crate) fn detach_failed(&self, ino: u64) {
        if let Some(f) = self.open_files.get(ino) {
            f.lock().unlink_failed();
        }
    }

    /// Fetch the version `of` reads (from `key`) into a staging file of its own, so its
    /// descriptors no longer need the object.
    fn fetch_rest(&self, of: &mut OpenFile, key: &str) -> FsResult<()> {
        let size = of.version().size();
        let src = ObjectSource::new(
            self.bucket.clone(),
            self.bucket.obj(key),
            of.version().etag().map(str::to_string),
            size,
            self.data_cache.clone().zip(self.cache_writer.clone()),
        );
        let (file, path) = self.new_staging_file()?;
        let copy = || -> FsResult<()> {
            let mut at = 0;
            while at < size {
                let end = (at + FETCH_CHUNK).min(size);
                let bytes = src.read(at, end)?;
                std::os::unix::fs::FileExt::write_all_at(&file, &bytes, at).map_err(|e| {
                    FsError::new(
                        errno_of(&e),
                        format!("{key}: keeping an unlinked file: {e}"),
                    )
                })?;
                at = end;
            }
            Ok(())
        };
        let mut copied = copy();
        // A full disk: once more after the data cache gave its space back.
        if copied.as_ref().is_err_and(|e| errno_is_disk_full(e.errno))
            && self.make_room_for_staging(size)
        {
            copied = copy();
        }
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        of.attach_staging(Staging::new(file, path), None);
        Ok(())
    }

    /// Before `key` is written by the mount (a new file, a rename onto it): an unlinked file
    /// whose object is kept there fetches it now and lets it go, so the write is not deleted
    /// at its last close.
    pub(crate) fn settle_kept(&self, key: &str) -> FsResult<()> {
        for (k, ino) in self.kept.under(key) {
            if k == key {
                self.settle_one(&k, ino, false)?;
            }
        }
        Ok(())
    }

    /// Before the directory `prefix` is renamed or removed: every kept object under it is
    /// fetched by its file and deleted, so none is copied to the new name or keeps the
    /// directory on the server.
    pub(crate) fn settle_kept_under(&self, prefix: &str) -> FsResult<()> {
        for (k, ino) in self.kept.under(prefix) {
            self.settle_one(&k, ino, true)?;
        }
        Ok(())
    }

    fn settle_one(&self, key: &str, ino: u64, delete: bool) -> FsResult<()> {
        // The version kept: a lost reply never lets the delete take another client's.
        let mut etag = None;
        if let Some(f) = self.open_files.get(ino) {
            let mut of = f.lock();
            if of.kept_key() == Some(key) {
                etag = of.version().etag().map(str::to_string);
                if of.staging().is_none() {
                    self.fetch_rest(&mut of, key)?;
                }
                of.take_kept_key();
            }
        }
        // Hidden until it is gone: a listing meanwhile must not show the name again.
        let deleted = if delete {
            self.bucket.delete(key, etag.as_deref())
        } else {
            Ok(())
        };
        self.kept.remove(key);
        deleted?;
        Ok(())
    }

    /// At the last close of an unlinked file (or at unmount): delete the object kept for it.
    pub(crate) fn release_kept(&self, of: &mut OpenFile) {
        let Some(key) = of.take_kept_key() else {
            return;
        };
        // Hidden until it is gone: a listing meanwhile must not show the name again.
        match self.bucket.delete(&key, of.version().etag()) {
            Ok(()) => log::debug!("{key}: unlinked while open; deleted at the last close"),
            Err(e) => log::warn!(
                "{key}: unlinked while open, but its object could not be deleted at the last close: {e}"
            ),
        }
        self.kept.remove(&key);
    }

    /// The key an open file's content is read from: its name's, or the object kept for it
    /// after an unlink.
    pub(crate) fn object_key(&self, of: &OpenFile) -> FsResult<String> {
        if let Some(k) = of.kept_key() {
            return Ok(k.to_string());
        }
        self.key_of(of.ino())
    }
}
