//! `copy_file_range` inside the mount: a server-side copy.
//!
//! GNU `cp` (coreutils ≥ 9) copies a file with `copy_file_range`. When the whole of an object
//! of the mount is copied into a file of the mount whose content is empty and only local (new,
//! or truncated: a staging file of 0 bytes), from offset 0 to the source's end, the bytes never
//! leave the server: one CopyObject (UploadPartCopy above 5 GiB, [`crate::s3::Bucket::copy`])
//! with the target's own metadata — what its upload at close would carry (`upload_plan`): a
//! new file's mode and a Content-Type from its own name, a truncated file's metadata as it was
//! — guarded by `x-amz-copy-source-if-match` with the ETag of the source version read, so a
//! source replaced meanwhile is never copied in its place. The target keeps its own tags (a
//! new file: none), not the source's that a copy would take along (`x-amz-tagging-directive:
//! REPLACE`, sent only when either has tags). A source with unsaved changes is
//! uploaded first. An `O_EXCL` target is looked at first (HEAD) and the copy is not made if
//! another client created the name meanwhile.
//!
//! The kernel hands a copy over in ranges (its reply holds 32 bits, so at most
//! [`MAX_COPY_REPLY`] bytes a call): the first range from offset 0 records the copy
//! ([`PendingCopy`]: the source's key, ETag and size) and is answered at once, each range that
//! continues it from where the last one stopped too, and the range that reaches the source's
//! end makes the copy — one request however many ranges. Until then the target's size is what
//! the ranges covered. Anything else that touches the target meanwhile (a read, a write, a
//! truncate, a close) first fetches the bytes covered into its staging file
//! (`S3Fs::settle_copy`, ranged GETs pinned to the source's ETag) and the file goes on as if
//! written through the mount. A server-side copy the server refuses is settled the same way
//! at close, where an error (EEXIST, EIO) then shows, as for any upload.
//!
//! Anything else — a range not from offset 0, a target with content, the same file, a source
//! with no object — is EOPNOTSUPP, on which the kernel copies through read and write itself
//! (its FUSE client falls back on EOPNOTSUPP and EXDEV; ENOSYS would turn `copy_file_range`
//! off for the whole mount; and GNU `cp` itself reads and writes when a first call fails with
//! any of them).

use super::error::{FsError, FsResult};
use super::open_file::OpenFile;
use super::S3Fs;
use crate::s3::meta::tag_count;
use crate::s3::{CopyRequest, ReplaceMetadata};

/// The most one reply may say was copied: the reply's count is 32 bits; a whole page less, so
/// a range never ends within a page the kernel could then think partly copied.
pub const MAX_COPY_REPLY: u64 = (u32::MAX as u64) & !0xfff;

/// Bytes fetched per ranged GET when a copy's ranges are settled into the staging file.
const SETTLE_CHUNK: usize = 8 * 1024 * 1024;

/// A copy of a whole object into an open file, recorded by its first range and made when its
/// ranges reach the source's end (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCopy {
    /// The source's key.
    pub key: String,
    /// The ETag of the source version read.
    pub etag: Option<String>,
    /// Its size.
    pub size: u64,
    /// Bytes `[0, covered)` of the target are the source's.
    pub covered: u64,
    /// The source may have tags (a copy would take them along): not known to have none.
    pub tagged: bool,
}

impl S3Fs {
    /// `copy_file_range(fh_in, offset_in, fh_out, offset_out, len)`: the bytes copied (0 at the
    /// source's end), or EOPNOTSUPP where the kernel is to copy through read and write.
    pub fn copy_file_range(
        &self,
        fh_in: u64,
        offset_in: u64,
        fh_out: u64,
        offset_out: u64,
        len: u64,
    ) -> FsResult<u64> {
        self.check_writable()?;
        let src = self.open_files.by_handle(fh_in)?;
        let dst = self.open_files.by_handle(fh_out)?;
        if std::sync::Arc::ptr_eq(&src, &dst) {
            return Err(not_here("a copy within one file"));
        }
        // One file's lock at a time (never both: two copies the other way round would wait on
        // each other). A source written since the copy's last range is uploaded below, which
        // replaces the version that range was of: its bytes are fetched first, and the copy
        // goes on by read and write.
        let src_dirty = src.lock().is_dirty();
        if src_dirty {
            let mut of = dst.lock();
            if of.pending_copy().is_some() {
                self.settle_copy(&mut of)?;
                return Err(not_here("a source written during the copy"));
            }
        }
        // The source: its version, uploaded if it has unsaved changes.
        let (source, src_ino) = {
            let mut of = src.lock();
            self.upload_if_dirty(&mut of)?;
            let key = self.table().key_of(of.ino());
            match key {
                Some(key) if of.version().exists() && of.copy_source_ok() => (
                    PendingCopy {
                        key,
                        etag: of.version().etag().map(str::to_string),
                        size: of.version().size(),
                        covered: 0,
                        tagged: false,
                    },
                    of.ino(),
                ),
                _ => return Err(not_here("the source has no object of its own")),
            }
        };
        // At or past the source's end: nothing to copy (cp asks once more after the last range).
        if offset_in >= source.size {
            return Ok(0);
        }
        let mut of = dst.lock();
        if let Some(c) = of.pending_copy() {
            let continues = c.key == source.key
                && c.etag == source.etag
                && offset_in == c.covered
                && offset_out == c.covered;
            if !continues {
                self.settle_copy(&mut of)?;
                return Err(not_here("a range that does not continue the copy"));
            }
            let n = len.min(c.size - c.covered).min(MAX_COPY_REPLY);
            c.covered += n;
            if c.covered == c.size && n > 0 {
                self.make_copy(&mut of);
            }
            return Ok(n);
        }
        if offset_in != 0 || offset_out != 0 || !of.is_empty_and_local() {
            return Err(not_here("not a whole object into an empty file"));
        }
        let n = len.min(source.size).min(MAX_COPY_REPLY);
        let whole = n == source.size;
        // Asked once, as the copy starts (not for every range that continues it).
        let tagged = !matches!(self.object_meta(src_ino),
            Ok(m) if m.etag == source.etag && tag_count(&m.content_headers) == 0);
        of.start_copy(PendingCopy {
            covered: n,
            tagged,
            ..source
        });
        if whole {
            self.make_copy(&mut of);
        }
        Ok(n)
    }

    /// The ranges of the copy into `of` reached the source's end: copy on the server. If the
    /// server refuses, the copy stays recorded and is settled at close (fetched and uploaded),
    /// where the error shows if that fails too.
    fn make_copy(&self, of: &mut OpenFile) {
        let Some(c) = of.take_copy() else { return };
        let ino = of.ino();
        // Not while a rename is moving this key.
        let Some((key, _uploading)) = self.rename_gate.write(|| self.table().key_of(ino)) else {
            return;
        };
        let result = (|| -> FsResult<()> {
            let plan = self.upload_plan(of, &key)?;
            if plan.exclusive && self.bucket.head_if_any(&key)?.is_some() {
                return Err(FsError::new(
                    libc::EEXIST,
                    format!("{key}: created by someone else meanwhile"),
                ));
            }
            // A copy takes its source's tags along; the target has its own instead (none when
            // new), as its upload would give it.
            let content_headers = if c.tagged || tag_count(&plan.content_headers) > 0 {
                self.bucket.with_own_tags(&key, &plan.content_headers)
            } else {
                plan.content_headers.clone()
            };
            let copied = self.bucket.copy(&CopyRequest {
                src: self.bucket.obj(&c.key),
                dst: self.bucket.obj(&key),
                replace: Some(ReplaceMetadata {
                    metadata: plan.metadata.clone(),
                    content_headers,
                }),
                if_match: c.etag.clone(),
                size: Some(c.size),
                storage_class: None,
            })?;
            log::debug!(
                "{key}: copied from {} on the server ({} bytes)",
                c.key,
                c.size
            );
            // The content is the object now: reads go to it, a write fetches it first.
            of.remove_staging();
            self.uploaded(of, &key, c.size, copied.etag, plan);
            Ok(())
        })();
        if let Err(e) = result {
            log::info!(
                "{key}: the server-side copy from {} failed ({e}); fetching and uploading it at close",
                c.key
            );
            of.start_copy(c);
        }
    }

    /// Before anything else touches a file with a copy under way: fetch the bytes its ranges
    /// covered into the staging file (ranged GETs of the source version), so it goes on as a
    /// file written through the mount.
    pub(crate) fn settle_copy(&self, of: &mut OpenFile) -> FsResult<()> {
        let Some(c) = of.take_copy() else {
            return Ok(());
        };
        let result = (|| -> FsResult<()> {
            let mut buf = vec![0u8; SETTLE_CHUNK.min(c.covered as usize)];
            let mut at = 0u64;
            while at < c.covered {
                let want = (c.covered - at).min(buf.len() as u64) as usize;
                let (n, _) =
                    self.bucket
                        .read_range(&c.key, at, &mut buf[..want], c.etag.as_deref())?;
                if n == 0 {
                    return Err(FsError::new(
                        libc::EIO,
                        format!("{}: shorter than the copy's {} bytes", c.key, c.covered),
                    ));
                }
                let w =
                    of.write_staging(at, &buf[..n], |bytes| self.make_room_for_staging(bytes))?;
                if w < n {
                    return Err(FsError::new(
                        libc::ENOSPC,
                        format!("{}: the staging disk is full", c.key),
                    ));
                }
                of.wrote(at, at + n as u64);
                at += n as u64;
            }
            Ok(())
        })();
        if result.is_err() {
            // Not a half-filled file at close: the copy stays recorded (close fails with the
            // error; nothing of it is uploaded).
            let _ = of.truncate_staging(0);
            of.start_copy(c);
        }
        result
    }
}

/// EOPNOTSUPP: the kernel copies through read and write instead.
fn not_here(why: &str) -> FsError {
    FsError::new(
        libc::EOPNOTSUPP,
        format!("copy_file_range: {why}; copied through read and write"),
    )
}
