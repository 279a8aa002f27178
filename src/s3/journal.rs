//! The multipart upload journal: which multipart uploads this cache directory's mounts started
//! and have not finished, so that the ones a crash left behind can be aborted.
//!
//! An in-progress multipart upload is invisible (S3 never shows a partial object) but its parts
//! are stored, and billed, until it is completed or aborted. A `kill -9`, a power cut or an OOM
//! kill in the middle of a large upload leaves one behind. So every multipart upload a mount
//! starts is written down here, in `<cache-dir>/uploads/`, one small file per upload (bucket,
//! key, upload id), *before* its first part is sent, and removed once the upload is completed or
//! aborted. At the next mount (and in `s3mount --recover`) every entry still there is aborted
//! and removed ([`UploadJournal::recover`]).
//!
//! Entries of uploads still running are protected by a lock, not by guessing: the process that
//! wrote an entry holds an exclusive `flock` on it for as long as the upload runs. The kernel
//! drops the lock when that process dies, however it dies, so [`UploadJournal::recover`] aborts
//! exactly the entries whose lock it can take — never the upload of a mount still running on
//! the same cache directory.
//!
//! An entry is written to a temporary name, synced and renamed into place, so a crash never
//! leaves half an entry under a final name. The small window between `CreateMultipartUpload`
//! returning and the entry being written is not covered; `s3mount --abort-stale-uploads` (which
//! asks the server) catches what it misses, and so does a bucket lifecycle rule.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::name::ObjectRef;
use super::private;
use super::store::{abort_if_open, ObjectStore};

/// First line of every entry (format version 1).
const MAGIC: &str = "s3mount multipart upload 1";
/// Entries end in this; anything else in the directory is ignored.
const EXTENSION: &str = "upload";
/// Characters escaped in an entry's values: controls (a key may hold a newline), space, `%`.
const ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

/// The journal directory of one cache directory.
#[derive(Debug)]
pub struct UploadJournal {
    dir: PathBuf,
    next: AtomicU64,
}

/// One recorded upload. Holds the entry's lock until dropped; [`JournalEntry::remove`] deletes
/// the entry (the upload is finished). Dropping it without `remove` keeps the entry for the next
/// [`UploadJournal::recover`].
#[derive(Debug)]
pub struct JournalEntry {
    path: PathBuf,
    _lock: File,
}

impl JournalEntry {
    /// The upload is completed or aborted: forget it.
    pub fn remove(self) {
        // Unlink while still holding the lock, so nobody can take it for a live entry.
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::warn!("cannot remove journal entry {}: {e}", self.path.display());
        }
    }

    /// Where the entry is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`UploadJournal::recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Uploads aborted (or found already gone), entries removed.
    pub aborted: Vec<(ObjectRef, String)>,
    /// Entries kept: the abort failed, or the entry is unreadable (path, why).
    pub kept: Vec<(PathBuf, String)>,
    /// Entries skipped because a running s3mount holds them.
    pub live: usize,
}

impl UploadJournal {
    /// The journal in `dir` (created if missing, private to this user like its entries: they
    /// name buckets, keys and upload ids).
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        private::create_dir_all(&dir)?;
        Ok(UploadJournal {
            dir,
            next: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write down that `upload_id` uploads `obj`; the entry is on disk (synced) when this
    /// returns, and locked until the returned [`JournalEntry`] is dropped.
    pub fn record(&self, obj: &ObjectRef, upload_id: &str) -> std::io::Result<JournalEntry> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{stamp}-{n}", std::process::id());
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(format!("{name}.{EXTENSION}"));
        let create = || {
            private::open_options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
        };
        // Made again if removed while mounted, or no upload would be recorded, and a crash
        // would leave its parts stored and billed.
        let mut file = private::create_in(&self.dir, create)?;
        let written = (|| {
            file.try_lock()?;
            file.write_all(encode(obj, upload_id).as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // The rename itself must survive a power cut too.
            File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(JournalEntry { path, _lock: file })
    }

    /// Abort every upload recorded by an s3mount that is no longer running (the entries whose
    /// lock can be taken), logging each, and remove their entries. Entries whose abort fails
    /// stay for the next time. Leftover temporary files are removed.
    pub fn recover(&self, store: &dyn ObjectStore) -> Recovery {
        let mut report = Recovery::default();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return report;
        };
        for entry in rd.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_tmp = name.starts_with('.') && name.ends_with(".tmp");
            if !is_tmp && path.extension().is_none_or(|e| e != EXTENSION) {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue; // removed meanwhile by its owner
            };
            if file.try_lock().is_err() {
                report.live += 1;
                continue;
            }
            if !path.exists() {
                continue; // its owner finished and removed it just before we took the lock
            }
            if is_tmp {
                // Never renamed into place: its upload's parts were never sent.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let Some((obj, upload_id)) = decode(&text) else {
                log::warn!(
                    "journal entry {} is unreadable; left in place",
                    path.display()
                );
                report
                    .kept
                    .push((path.clone(), "unreadable journal entry".into()));
                continue;
            };
            match abort_if_open(store, &obj, &upload_id) {
                Ok(_) => {
                    log::warn!(
                        "{obj}: aborted multipart upload {upload_id} left unfinished by an s3mount that stopped; the object is as it was before that upload"
                    );
                    let _ = std::fs::remove_file(&path);
                    report.aborted.push((obj, upload_id));
                }
                Err(e) => {
                    log::warn!(
                        "{obj}: cannot abort multipart upload {upload_id} left by an s3mount that stopped ({e}); will try again at the next start"
                    );
                    report.kept.push((path.clone(), e.to_string()));
                }
            }
            drop(file);
        }
        report
    }
}

fn encode(obj: &ObjectRef, upload_id: &str) -> String {
    let e = |s: &str| utf8_percent_encode(s, ESCAPED).to_string();
    format!(
        "{MAGIC}\nbucket {}\nkey {}\nupload-id {}\n",
        e(&obj.bucket),
        e(&obj.key),
        e(upload_id)
    )
}

fn decode(text: &str) -> Option<(ObjectRef, String)> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let (mut bucket, mut key, mut id) = (None, None, None);
    for line in lines {
        let (name, value) = line.split_once(' ')?;
        let value = percent_decode_str(value).decode_utf8().ok()?.into_owned();
        match name {
            "bucket" => bucket = Some(value),
            "key" => key = Some(value),
            "upload-id" => id = Some(value),
            _ => {}
        }
    }
    let (bucket, key, id) = (bucket?, key?, id?);
    if bucket.is_empty() || id.is_empty() {
        return None;
    }
    Some((ObjectRef { bucket, key }, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str) -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: key.into(),
        }
    }

    #[test]
    fn entries_round_trip_any_key() {
        for key in ["plain", "a b/c%d", "new\nline", "ünï cødé", "100% "] {
            let text = encode(&obj(key), "id with spaces");
            assert_eq!(text.lines().count(), 4, "{text:?}");
            assert_eq!(
                decode(&text),
                Some((obj(key), "id with spaces".to_string()))
            );
        }
        assert_eq!(decode(""), None);
        assert_eq!(decode("something else\nbucket b\n"), None);
        assert_eq!(decode(&format!("{MAGIC}\nbucket b\nkey k\n")), None);
        assert_eq!(
            decode(&format!("{MAGIC}\nbucket b\nkey %FF\nupload-id x\n")),
            None
        );
    }

    #[test]
    fn live_entries_are_locked_and_removed_entries_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let j = UploadJournal::open(dir.path().join("uploads")).unwrap();
        let e = j.record(&obj("k"), "id").unwrap();
        let path = e.path().to_path_buf();
        assert!(path.exists());
        // Another open file description cannot take the lock while the entry is held.
        let other = File::open(&path).unwrap();
        assert!(other.try_lock().is_err());
        e.remove();
        assert!(!path.exists());
        // Dropped without remove: kept, and unlocked.
        let e = j.record(&obj("k2"), "id2").unwrap();
        let path = e.path().to_path_buf();
        drop(e);
        let f = File::open(&path).unwrap();
        assert!(f.try_lock().is_ok());
        assert_eq!(
            decode(&std::fs::read_to_string(&path).unwrap()),
            Some((obj("k2"), "id2".into()))
        );
        let names: Vec<_> = std::fs::read_dir(j.dir()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_directory_removed_while_in_use_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let j = UploadJournal::open(dir.path().join("c").join("uploads")).unwrap();
        std::fs::remove_dir_all(dir.path().join("c")).unwrap();
        let e = j.record(&obj("k"), "id").unwrap();
        assert_eq!(
            decode(&std::fs::read_to_string(e.path()).unwrap()),
            Some((obj("k"), "id".into()))
        );
        let mode = std::fs::metadata(j.dir()).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
    }
}
