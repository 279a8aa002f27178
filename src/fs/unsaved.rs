//! The `unsaved/` directory: content whose upload failed, kept until it reaches the server.
//!
//! When an upload fails after retries (or s3mount is stopped by force with files still open),
//! the staging file is hard-linked — or, where that fails, copied — to
//! `<cache-dir>/unsaved/<time>-<key>.data`, and a note `<time>-<key>.key` is written beside it:
//! the object's name (`s3://bucket/key`) on the first line, then one `name: value` line per
//! header the upload carried (content headers, and `x-amz-meta-*` with values that are not
//! printable ASCII RFC 2047-encoded), so `s3mount --recover` puts the object back as the upload
//! would have, metadata and Content-Type included, and an `s3mount-base:` line naming the
//! version the bytes were made from ([`Base`]): `--recover` puts them back only over that
//! version ([`upload_kept`]), never over a newer one. A later successful upload of the file
//! removes both. Staging files found at a mount's start (left by an s3mount that died) are
//! moved here without a note, unless another running mount uses the same directory
//! ([`claim_staging`]): their writer never closed them, so they may be incomplete.
//!
//! Both sides of the note live here: `S3Fs::save_unsaved` writes it, [`find`] and
//! [`Note::parse`] read it for `--recover`.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::error::FsError;
use super::open_file::OpenFile;
use super::S3Fs;
use crate::s3::etag::is_md5_hex;
use crate::s3::meta::{decode_value, encode_value, headers_kept_from_head};
use crate::s3::storage::guess_content_type;
use crate::s3::{
    private, Bucket, Headers, Metadata, ObjectInfo, ObjectRef, PutOptions, RequestBody,
    StorageError,
};

/// Extension of a kept copy's content.
pub const DATA_EXTENSION: &str = "data";
/// Extension of its note.
pub const NOTE_EXTENSION: &str = "key";
/// The note's line that carries a key the first line cannot hold as it is (see
/// [`Note::render`]).
const KEY_LINE: &str = "s3mount-key";
/// The note's line naming the version the content was made from (see [`Base`]).
const BASE_LINE: &str = "s3mount-base";
/// [`BASE_LINE`]'s value for a file that had no object.
const BASE_ABSENT: &str = "none";
/// [`BASE_LINE`]'s value for an object version: this, then its ETag.
const BASE_ETAG: &str = "etag ";
/// Characters of the key kept in a copy's file name: with the time stamp and the extension
/// it stays well under the 255 bytes a file name may have.
const NAME_KEY_CHARS: usize = 150;

/// The note beside a kept copy: where the content belongs and what its upload carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// The object.
    pub obj: ObjectRef,
    /// Content headers (`content-type`, ...).
    pub content_headers: Vec<(String, String)>,
    /// User metadata.
    pub metadata: Metadata,
    /// The version of the object the content was made from.
    pub base: Base,
}

/// The version of an object a kept copy was made from: `--recover` uploads it only while the
/// object is still that version, so that it never replaces what was written since.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Base {
    /// Not known: a note of an s3mount before this line was written, or a version the server
    /// gave no ETag. Uploaded without a condition, as those versions did.
    #[default]
    Unknown,
    /// No object: the file was new.
    Absent,
    /// The object with this ETag (the version the open file read and modified).
    Version(String),
}

impl Base {
    /// The note line's value; `None` for [`Base::Unknown`] (no line).
    fn render(&self) -> Option<String> {
        match self {
            Base::Unknown => None,
            Base::Absent => Some(BASE_ABSENT.to_string()),
            Base::Version(etag) => Some(format!("{BASE_ETAG}{}", encode_value(etag))),
        }
    }

    /// Read the note line's value; anything else is [`Base::Unknown`].
    fn parse(value: Option<&str>) -> Base {
        match value {
            Some(BASE_ABSENT) => Base::Absent,
            Some(v) => match v.strip_prefix(BASE_ETAG) {
                Some(etag) if !etag.is_empty() => Base::Version(decode_value(etag)),
                _ => Base::Unknown,
            },
            None => Base::Unknown,
        }
    }

    /// Is an object found as `now` (`None`: no object) still this version?
    fn is(&self, now: Option<&ObjectInfo>) -> bool {
        match (self, now) {
            (Base::Unknown, _) => true,
            (Base::Absent, now) => now.is_none(),
            (Base::Version(etag), Some(now)) => now.etag.as_deref() == Some(etag.as_str()),
            (Base::Version(_), None) => false,
        }
    }
}

impl std::fmt::Display for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Base::Unknown => f.write_str("an unrecorded version"),
            Base::Absent => f.write_str("no object (a new file)"),
            Base::Version(etag) => write!(f, "ETag {etag}"),
        }
    }
}

impl Note {
    /// The note's text (see the module documentation). A key that a line cannot carry as it
    /// is — a line break or another control character in it, or white space at either end,
    /// which a reader of lines may lose — shows on the first line with those characters as
    /// `?`, for people, and exactly, RFC 2047-encoded, on an `s3mount-key:` line, which
    /// [`Note::parse`] prefers: `--recover` must put the content at its own key, not at a
    /// neighbour's.
    pub fn render(&self) -> String {
        let key = &self.obj.key;
        let exact = !key.chars().any(char::is_control) && key.trim() == key.as_str();
        let shown: String = key
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let mut note = format!("s3://{}/{shown}\n", self.obj.bucket);
        if !exact {
            // Such a key is never plain printable ASCII: `encode_value` encodes it.
            note.push_str(&format!("{KEY_LINE}: {}\n", encode_value(key)));
        }
        if let Some(base) = self.base.render() {
            note.push_str(&format!("{BASE_LINE}: {base}\n"));
        }
        for (n, v) in &self.content_headers {
            note.push_str(&format!("{n}: {v}\n"));
        }
        for (n, v) in self.metadata.iter() {
            note.push_str(&format!("{n}: {}\n", encode_value(v)));
        }
        note
    }

    /// Read a note's text; `None` without an `s3://bucket/key` first line.
    pub fn parse(text: &str) -> Option<Note> {
        let mut lines = text.lines();
        let (bucket, shown) = lines.next()?.strip_prefix("s3://")?.split_once('/')?;
        let headers: Headers = lines.filter_map(|l| l.split_once(": ")).collect();
        let key = match headers.get(KEY_LINE) {
            Some(v) => decode_value(v),
            None => shown.to_string(),
        };
        let content_headers = headers_kept_from_head()
            .filter_map(|n| headers.get(n).map(|v| (n.to_string(), v.to_string())))
            .collect();
        Some(Note {
            obj: ObjectRef {
                bucket: bucket.to_string(),
                key,
            },
            content_headers,
            metadata: headers.metadata(),
            base: Base::parse(headers.get(BASE_LINE)),
        })
    }

    /// The options of the upload that puts the content back: the headers the note names (a
    /// Content-Type from the key's extension if it names none), and the condition that the
    /// object is still the [`Base`] version (`If-Match`, or `If-None-Match: *` for no object).
    pub fn put_options(&self) -> PutOptions {
        let mut content_headers = self.content_headers.clone();
        if content_headers.is_empty() {
            content_headers.push(("content-type".into(), guess_content_type(&self.obj.key)));
        }
        PutOptions {
            metadata: self.metadata.clone(),
            content_headers,
            if_none_match_any: self.base == Base::Absent,
            if_match: match &self.base {
                Base::Version(etag) => Some(etag.clone()),
                _ => None,
            },
        }
    }
}

/// What [`upload_kept`] did.
#[derive(Debug, PartialEq)]
pub enum Recovered {
    /// The content is the object now (its copy is removed).
    Uploaded,
    /// The object already held exactly this content, as a single PUT of it (an upload whose
    /// reply was lost, or the same bytes written again): nothing was sent, the copy is removed.
    AlreadyThere,
    /// The object is no longer the version the content was made from — written since, through
    /// a mount or by another client, or removed — so it was left alone, and so is the copy.
    Changed {
        /// What the object is now: no object, another ETag, or not known (the server refused
        /// the upload's condition: changed between the HEAD and the upload).
        now: Base,
    },
    /// A running mount still has the file open (its copy is a hard link to the staging file
    /// being written): not uploaded, the copy stays for a later `--recover`.
    StillOpen,
}

/// A shared `flock` on the kept copy `path`, held by the mount while its file is open: the copy
/// is a hard link to the staging file, which the file's other descriptors still write into
/// (after an fsync or close of one of them failed), so `--recover` must not upload it yet
/// ([`upload_kept`] takes the lock exclusively, or leaves the copy alone). Never waits: `None`
/// (and a warning) where it cannot be taken.
fn hold_copy(path: &Path) -> Option<File> {
    let lock = File::open(path).and_then(|f| match f.try_lock_shared() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(std::io::ErrorKind::WouldBlock.into()),
        Err(TryLockError::Error(e)) => Err(e),
    });
    match lock {
        Ok(f) => Some(f),
        Err(e) => {
            log::warn!(
                "cannot lock {}: {e}; `--recover` may upload it while the file is open",
                path.display()
            );
            None
        }
    }
}

/// Upload the kept copy `data` as its note says, only over the version it was made from
/// (`note.base`): a HEAD first, which catches a change on every server (Garage ignores the
/// conditions), then the upload under `If-Match` / `If-None-Match: *`, which closes the window
/// between the two where the server honours them. The copy is removed once uploaded; when the
/// object changed, nothing is written and the copy stays. A copy whose file a running mount
/// still has open ([`hold_copy`]) is not touched: [`Recovered::StillOpen`].
pub fn upload_kept(bucket: &Bucket, data: &Path, note: &Note) -> Result<Recovered, StorageError> {
    let key = &note.obj.key;
    let io = |e| StorageError::io(data.display(), e);
    let file = File::open(data).map_err(io)?;
    // Held until the copy is uploaded and removed.
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(Recovered::StillOpen),
        // A file system without `flock`: the mount could not lock it either.
        Err(TryLockError::Error(e)) => log::warn!("cannot lock {}: {e}", data.display()),
    }
    if note.base != Base::Unknown {
        let now = bucket.head_if_any(key)?;
        if !note.base.is(now.as_ref()) {
            if let Some(h) = &now {
                if holds(h, data).map_err(|e| StorageError::io(data.display(), e))? {
                    remove(data);
                    return Ok(Recovered::AlreadyThere);
                }
            }
            let now = match now {
                None => Base::Absent,
                Some(h) => h.etag.map_or(Base::Unknown, Base::Version),
            };
            return Ok(Recovered::Changed { now });
        }
    }
    let len = file.metadata().map_err(io)?.len();
    match bucket.put_file(key, &file, len, &note.put_options()) {
        Ok(_) => {
            remove(data);
            Ok(Recovered::Uploaded)
        }
        // Changed between the HEAD and the upload (or, under `If-Match`, removed).
        Err(e) if e.is_precondition_failed() => Ok(Recovered::Changed { now: Base::Unknown }),
        Err(StorageError::NotFound { .. }) if note.base != Base::Unknown => {
            Ok(Recovered::Changed { now: Base::Absent })
        }
        Err(e) => Err(e),
    }
}

/// Does the object `now` hold exactly the bytes of `data`? Known only for an object stored by
/// a single PUT, whose ETag is the MD5 of its bytes (see [`crate::s3::etag`]); a multipart
/// object's ETag depends on its part size, which the copy does not record, so it is taken for
/// another content.
fn holds(now: &ObjectInfo, data: &Path) -> std::io::Result<bool> {
    let Some(etag) = now.etag.as_deref().filter(|e| is_md5_hex(e)) else {
        return Ok(false);
    };
    let file = File::open(data)?;
    let len = file.metadata()?.len();
    if len != now.size {
        return Ok(false);
    }
    let body = RequestBody::File {
        file: &file,
        offset: 0,
        len,
    };
    Ok(body.md5_hex()?.eq_ignore_ascii_case(etag))
}

/// What `--recover` finds in an `unsaved/` directory.
#[derive(Debug)]
pub enum Found {
    /// Content kept after a failed upload, and its note (`None`: missing or unreadable).
    Kept {
        /// The content.
        data: PathBuf,
        /// Where it belongs.
        note: Option<Note>,
    },
    /// A staging file moved here at a mount's start: maybe incomplete, object unknown.
    Leftover(PathBuf),
}

/// Everything kept in the `unsaved/` directory `dir`.
pub fn find(dir: &Path) -> std::io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let data = entry.path();
        match data.extension() {
            None => found.push(Found::Leftover(data)),
            Some(e) if e == DATA_EXTENSION => {
                let text = std::fs::read_to_string(note_path(&data)).unwrap_or_default();
                let note = Note::parse(&text);
                found.push(Found::Kept { data, note });
            }
            Some(_) => {} // a note: read with its content
        }
    }
    Ok(found)
}

/// Remove a kept copy and its note (its content reached the server).
pub fn remove(data: &Path) {
    let _ = std::fs::remove_file(data);
    let _ = std::fs::remove_file(note_path(data));
}

fn note_path(data: &Path) -> PathBuf {
    data.with_extension(NOTE_EXTENSION)
}

/// The lock file beside `staging/` and `unsaved/` in a mount's cache directory.
const STAGING_LOCK: &str = "staging.lock";

/// Claim `cache_dir`'s staging files for a mount's life: the file returned holds a shared
/// `flock` on `STAGING_LOCK`, which every mount using the directory holds. The staging files
/// of an earlier run are moved to `unsaved/` first (`keep_leftovers`) — but only when no
/// other running mount holds the lock: two mounts can share a cache directory (one
/// `--cache-dir` given to both for the same bucket, or two bucket and prefix names that map to
/// one directory, as `logs` with prefix `2024/` and the bucket `logs-2024` do), and the other
/// mount's staging files are files it is writing, not leftovers. Moved, they showed under
/// `unsaved/` as if left by a crash, and stayed there after their upload. Where the lock
/// cannot be taken at all (a file system without `flock`), leftovers are moved as before.
pub fn claim_staging(cache_dir: &Path, staging: &Path, unsaved: &Path) -> Option<File> {
    let path = cache_dir.join(STAGING_LOCK);
    let without_lock = |e: std::io::Error| {
        log::warn!(
            "cannot lock {}: {e}; staging files found are taken for leftovers",
            path.display()
        );
        keep_leftovers(staging, unsaved);
        None
    };
    let lock = private::open_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path);
    let lock = match lock {
        Ok(f) => f,
        Err(e) => return without_lock(e),
    };
    match lock.try_lock() {
        Ok(()) => {
            keep_leftovers(staging, unsaved);
            // Shared from now on, so that another mount can start beside this one. Between the
            // two locks a mount starting may move this directory's staging files: this one has
            // none yet.
            let _ = lock.unlock();
        }
        Err(TryLockError::WouldBlock) => log::info!(
            "{} is in use by another running s3mount: its staging files are left alone",
            cache_dir.display()
        ),
        Err(TryLockError::Error(e)) => return without_lock(e),
    }
    match lock.lock_shared() {
        Ok(()) => Some(lock),
        Err(e) => {
            log::warn!("cannot lock {}: {e}", path.display());
            None
        }
    }
}

/// Staging files of an earlier run are unsaved work: move them from `staging` to `unsaved`,
/// never delete them.
fn keep_leftovers(staging: &Path, unsaved: &Path) {
    let Ok(rd) = std::fs::read_dir(staging) else {
        return;
    };
    for entry in rd.flatten() {
        let to = unsaved.join(entry.file_name());
        if std::fs::rename(entry.path(), &to).is_ok() {
            log::warn!(
                "found staging file from an earlier run; kept as {}",
                to.display()
            );
        }
    }
}

/// The name of a copy of `key` kept at `stamp`: the key with every character other than ASCII
/// letters, digits, `.` and `-` replaced by `_`, cut to [`NAME_KEY_CHARS`].
fn copy_name(stamp: u128, key: &str) -> String {
    let safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(NAME_KEY_CHARS)
        .collect();
    format!("{stamp}-{safe}.{DATA_EXTENSION}")
}

/// The version `of`'s content was made from: the object it read (and was uploaded as last),
/// or none for a new file.
fn base_of(of: &OpenFile) -> Base {
    let v = of.version();
    match (v.exists(), v.etag()) {
        (false, _) => Base::Absent,
        (true, Some(etag)) => Base::Version(etag.to_string()),
        (true, None) => Base::Unknown,
    }
}

impl S3Fs {
    /// Keep the staging file under `unsaved/` after a failed upload (once per file: later
    /// failures find it kept); the error becomes EIO (EEXIST stays).
    pub(super) fn save_unsaved(&self, of: &mut OpenFile, key: &str, e: FsError) -> FsError {
        let Some(staging) = of.staging() else {
            return e;
        };
        if of.saved().is_none() {
            let stamp = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let path = self.unsaved_dir.join(copy_name(stamp, key));
            // Made again if it was removed while mounted (a cache cleaner): not losing the
            // bytes is the point. A hard link shares the staging file's inode (later writes
            // land in it too) and so its mode, private since its creation; a copy is created
            // private too.
            let linked = private::create_dir_all(&self.unsaved_dir)
                .and_then(|()| std::fs::hard_link(staging.path(), &path))
                .or_else(|_| private::copy_new(staging.path(), &path).map(|_| ()));
            match linked {
                Ok(()) => {
                    // Held before the note is written: `--recover` skips a copy without one.
                    let lock = hold_copy(&path);
                    // Headers changed while open, else the object's as the mount last knew
                    // them (a clean file's next upload reads them again: `OpenFile::uploaded`).
                    let known = self.table().get(of.ino()).and_then(|n| n.meta().cloned());
                    let (metadata, content_headers) = match of.pending_metadata() {
                        Some(m) => (m.clone(), of.content_headers().cloned()),
                        None => known
                            .map(|k| (k.metadata, Some(k.content_headers)))
                            .unwrap_or_default(),
                    };
                    let note = Note {
                        obj: self.bucket.obj(key),
                        content_headers: content_headers.unwrap_or_default(),
                        metadata,
                        base: base_of(of),
                    };
                    let _ = private::write(&note_path(&path), note.render().as_bytes());
                    of.set_saved(path, lock);
                }
                Err(err) => log::error!("{key}: could not keep the unsaved content: {err}"),
            }
        }
        if let Some(p) = of.saved() {
            log::error!(
                "{key}: upload failed ({e}); the content is kept in {}",
                p.display()
            );
        }
        FsError::new(
            if e.errno == libc::EEXIST {
                libc::EEXIST
            } else {
                libc::EIO
            },
            e.message,
        )
    }

    /// The file's content reached the server: its kept copy, if any, is not needed any more.
    pub(super) fn drop_saved_copy(&self, of: &mut OpenFile, key: &str) {
        if let Some(p) = of.take_saved() {
            remove(&p);
            log::info!("{key}: uploaded; removed the saved copy {}", p.display());
        }
    }

    /// At a forced stop: keep every open file's unsaved changes under `unsaved/`, without
    /// uploading them — a writer may be in the middle of the file, and a half-written object
    /// must never reach the server. Returns how many files were kept.
    pub fn save_open_files(&self) -> usize {
        let mut kept = 0;
        for f in self.open_files.all() {
            let mut of = f.lock();
            if !of.is_dirty() {
                continue;
            }
            let Some(key) = self.table().key_of(of.ino()) else {
                continue;
            };
            let _ = self.save_unsaved(
                &mut of,
                &key,
                FsError::new(libc::EIO, "s3mount stopped with the file still open"),
            );
            kept += 1;
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A staging file of an earlier run is moved to `unsaved/` at a mount's start; one of a
    /// mount still running on the same cache directory is left where its writer has it.
    #[test]
    fn only_the_staging_files_of_no_running_mount_are_moved() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, unsaved) = (dir.path().join("staging"), dir.path().join("unsaved"));
        for d in [&staging, &unsaved] {
            std::fs::create_dir(d).unwrap();
        }
        let listed = |d: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        std::fs::write(staging.join("left"), b"x").unwrap();
        let first = claim_staging(dir.path(), &staging, &unsaved).expect("locked");
        assert_eq!(listed(&unsaved), ["left"]);

        std::fs::write(staging.join("being-written"), b"y").unwrap();
        let second = claim_staging(dir.path(), &staging, &unsaved).expect("shared");
        assert_eq!(listed(&staging), ["being-written"]);
        drop(first);
        assert_eq!(listed(&staging), ["being-written"], "the second still runs");

        drop(second);
        let _third = claim_staging(dir.path(), &staging, &unsaved).expect("locked");
        assert_eq!(listed(&unsaved), ["being-written", "left"]);
    }

    fn note() -> Note {
        let metadata: Metadata = [("mode", "33188"), ("x-amz-meta-label", "grüße, ✓")]
            .into_iter()
            .collect();
        Note {
            obj: ObjectRef {
                bucket: "b".into(),
                key: "dir/a file.txt".into(),
            },
            content_headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            metadata,
            base: Base::Version("0123abc".into()),
        }
    }

    #[test]
    fn a_note_reads_back_as_written() {
        let n = note();
        let text = n.render();
        assert!(text.starts_with("s3://b/dir/a file.txt\n"), "{text}");
        assert!(text.is_ascii(), "values are encoded: {text}");
        let back = Note::parse(&text).unwrap();
        assert_eq!(back.obj, n.obj);
        assert_eq!(back.metadata, n.metadata);
        let mut want = n.content_headers.clone();
        want.sort();
        let mut got = back.content_headers.clone();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(back.base, n.base);
        let opts = back.put_options();
        assert_eq!(opts.metadata, n.metadata);
        assert!(!opts.if_none_match_any);
        assert_eq!(opts.if_match.as_deref(), Some("0123abc"));
    }

    /// The version a copy was made from reads back, and becomes the upload's condition; a note
    /// without it (written by an s3mount before it was recorded) is uploaded unconditionally,
    /// as it was then.
    #[test]
    fn the_base_version_reads_back_and_an_old_note_has_none() {
        for base in [
            Base::Absent,
            Base::Version("d41d8cd98f00b204e9800998ecf8427e-2".into()),
            Base::Version("none".into()),
            Base::Version("odd\nvalue ".into()),
            Base::Unknown,
        ] {
            let mut n = note();
            n.base = base.clone();
            let back = Note::parse(&n.render()).unwrap();
            assert_eq!(back.base, base, "{:?}", n.render());
            assert_eq!(back.metadata, n.metadata, "the base line is not metadata");
        }
        let old = Note::parse("s3://b/k\ncontent-type: text/plain\n").unwrap();
        assert_eq!(old.base, Base::Unknown);
        let opts = old.put_options();
        assert!(!opts.if_none_match_any && opts.if_match.is_none());
        let new = Note {
            base: Base::Absent,
            ..old
        };
        assert!(new.put_options().if_none_match_any);
        for bad in ["s3mount-base: etag ", "s3mount-base: something"] {
            let n = Note::parse(&format!("s3://b/k\n{bad}\n")).unwrap();
            assert_eq!(n.base, Base::Unknown, "{bad}");
        }
    }

    #[test]
    fn a_key_no_line_can_hold_reads_back_exactly() {
        for key in [
            "a\nb",
            "trailing space ",
            " leading",
            "tab\tand\r\nbreak",
            "nel\u{85}",
            "=?UTF-8?B?bm90IGEga2V5?=",
        ] {
            let mut n = note();
            n.obj.key = key.into();
            let text = n.render();
            let first = text.lines().next().unwrap();
            assert!(!first.chars().any(char::is_control), "{first:?}");
            let back = Note::parse(&text).unwrap();
            assert_eq!(back.obj.key, key, "{text:?}");
            assert_eq!(back.metadata, n.metadata, "the key line is not metadata");
        }
        // A plain key is written as before (and notes of earlier versions read the same).
        let text = note().render();
        assert!(!text.contains(KEY_LINE), "{text}");
    }

    #[test]
    fn a_note_without_headers_gets_a_content_type_and_a_bad_one_is_none() {
        let n = Note::parse("s3://b/x.json\n").unwrap();
        assert!(n.metadata.is_empty());
        assert_eq!(
            n.put_options().content_headers,
            vec![("content-type".to_string(), guess_content_type("x.json"))]
        );
        for bad in ["", "b/x", "s3://bucket-only\n", "http://b/x\n"] {
            assert_eq!(Note::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn copies_are_found_with_their_notes_and_removed_with_them() {
        let d = tempfile::tempdir().unwrap();
        let name = copy_name(42, "dir/ä b.txt");
        assert_eq!(name, "42-dir___b.txt.data");
        assert!(copy_name(1, &"k".repeat(400)).len() < 255);
        let data = d.path().join(&name);
        std::fs::write(&data, b"content").unwrap();
        std::fs::write(note_path(&data), note().render()).unwrap();
        let lone = d.path().join("9-lone.data");
        std::fs::write(&lone, b"x").unwrap();
        let leftover = d.path().join("s3mount-abc");
        std::fs::write(&leftover, b"y").unwrap();
        let mut found = find(d.path()).unwrap();
        found.sort_by_key(|f| format!("{f:?}"));
        assert_eq!(found.len(), 3, "{found:?}");
        let mut kept = 0;
        for f in &found {
            match f {
                Found::Kept { data: p, note: n } if *p == data => {
                    assert_eq!(n.as_ref().map(|n| &n.obj), Some(&note().obj));
                    kept += 1;
                }
                Found::Kept {
                    data: p,
                    note: None,
                } if *p == lone => kept += 1,
                Found::Leftover(p) if *p == leftover => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(kept, 2);
        remove(&data);
        assert!(!data.exists() && !note_path(&data).exists());
        assert!(find(&d.path().join("missing")).is_err());
    }
}
