//! The seed connector's API on [`Storage`]: `write`, `read`, `exists`, `copy`, `delete`,
//! `update_metadata`, with the seed's meaning.
//!
//! Names are [`S3Name`]s resolved against the default bucket, "headers" may carry
//! `x-amz-meta-*` metadata and content headers ([`Headers`]), and metadata comes back as
//! [`Metadata`]. Each call resolves its name to a bucket and works through that
//! [`super::Bucket`]: uploads above the multipart threshold go in parallel parts, copies above
//! 5 GiB part by part, downloads resume a broken body and appear only once complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use super::error::{Result, StorageError};
use super::meta::{guess_content_type, merge_headers, Metadata, META_PREFIX};
use super::metadata::{update_metadata, CurrentMetadata, UpdateError};
use super::name::{ObjectRef, S3Name};
use super::storage::Storage;
use super::types::{CopyRequest, PutOptions, ReplaceMetadata};

/// Request headers in the seed's sense: `x-amz-meta-*` metadata plus content headers such as
/// `Content-Type`. Names are case-insensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(BTreeMap<String, String>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Set a header (name lower-cased).
    pub fn insert(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.0.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// A header's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The `x-amz-meta-*` part.
    pub fn metadata(&self) -> Metadata {
        Metadata::from_headers(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// True if any `x-amz-meta-*` header is present.
    pub fn has_metadata(&self) -> bool {
        self.0.keys().any(|k| k.starts_with(META_PREFIX))
    }

    /// The other headers, validated: names the client computes itself are refused, and so is
    /// `x-amz-meta-` without a name (there is no metadata entry to make of it).
    pub(crate) fn others(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            if k == META_PREFIX {
                return Err(StorageError::invalid(
                    "metadata name",
                    format!("{META_PREFIX} without a name"),
                ));
            }
            if k.starts_with(META_PREFIX) {
                continue;
            }
            if matches!(
                k.as_str(),
                "host" | "authorization" | "content-length" | "transfer-encoding" | "x-amz-date"
            ) || k.starts_with("x-amz-content-sha256")
            {
                return Err(StorageError::invalid(
                    "header",
                    format!("{k} is set by the client itself"),
                ));
            }
            if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(StorageError::invalid(
                    "header",
                    format!("{k}: value contains a line break or NUL"),
                ));
            }
            out.push((k.clone(), v.clone()));
        }
        Ok(out)
    }

    /// The other headers ([`Headers::others`]), once the whole set is found sendable to `obj`:
    /// before any request, so a bad set costs none, and with `obj` named in the error.
    fn checked_for(&self, obj: &ObjectRef) -> Result<Vec<(String, String)>> {
        let named = |e| match e {
            StorageError::InvalidInput { what, detail } => StorageError::InvalidInput {
                what,
                detail: format!("{obj}: {detail}"),
            },
            other => other,
        };
        let others = self.others().map_err(named)?;
        self.metadata().to_headers().map_err(named)?;
        Ok(others)
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (k, v) in iter {
            h.insert(k.as_ref(), v);
        }
        h
    }
}

impl Storage {
    /// Upload the local file `local` as `remote`, with the metadata and content headers in
    /// `headers`. A Content-Type is guessed from the key's extension unless given.
    ///
    /// `local` must be a regular file: a directory is [`StorageError::Io`] (EISDIR), a FIFO,
    /// device or socket [`StorageError::InvalidInput`] (it has no size to upload; for a stream
    /// see [`super::StreamingUpload`]).
    pub fn write(
        &self,
        local: impl AsRef<Path>,
        remote: impl Into<S3Name>,
        headers: &Headers,
    ) -> Result<()> {
        let obj = self.resolve(remote)?;
        let mut content_headers = headers.checked_for(&obj)?;
        let path = local.as_ref();
        // Looked at before the open, which blocks on a FIFO until a writer comes.
        regular_file(path, std::fs::metadata(path))?;
        let file = File::open(path).map_err(|e| StorageError::io(path.display(), e))?;
        // And the file opened, in case the name was replaced meanwhile.
        let len = regular_file(path, file.metadata())?.len();
        if !content_headers.iter().any(|(n, _)| n == "content-type") {
            content_headers.push(("content-type".into(), guess_content_type(&obj.key)));
        }
        let opts = PutOptions {
            metadata: headers.metadata(),
            content_headers,
            ..PutOptions::default()
        };
        self.bucket(&obj.bucket)
            .put_file(&obj.key, &file, len, &opts)?;
        Ok(())
    }

    /// Download `remote` into the local file `local` and return its metadata. The file appears
    /// only once complete (written beside it, then renamed).
    pub fn read(&self, remote: impl Into<S3Name>, local: impl AsRef<Path>) -> Result<Metadata> {
        let obj = self.resolve(remote)?;
        let path = local.as_ref();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // Mode 0666 less the umask, as `open(local, "w")` in the seed would create it (a bare
        // NamedTempFile would leave the download at 0600).
        let mut tmp = tempfile::Builder::new()
            .prefix(".s3mount-download.")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| StorageError::io(dir.display(), e))?;
        let info = self
            .bucket(&obj.bucket)
            .download(&obj.key, tmp.as_file_mut())?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| StorageError::io(path.display(), e))?;
        tmp.persist(path)
            .map_err(|e| StorageError::io(path.display(), e.error))?;
        Ok(info.metadata)
    }

    /// `Some(metadata)` if `remote` exists, `None` if not.
    pub fn exists(&self, remote: impl Into<S3Name>) -> Result<Option<Metadata>> {
        let obj = self.resolve(remote)?;
        Ok(self
            .bucket(&obj.bucket)
            .head_if_any(&obj.key)?
            .map(|i| i.metadata))
    }

    /// Server-side copy. The destination's metadata comes from `headers` when it holds any
    /// `x-amz-meta-*`, else from the source (as in the seed). Content headers are kept.
    pub fn copy(
        &self,
        src: impl Into<S3Name>,
        dst: impl Into<S3Name>,
        headers: &Headers,
    ) -> Result<()> {
        let src = self.resolve(src)?;
        let dst = self.resolve(dst)?;
        let extra = headers.checked_for(&dst)?;
        let head = self.bucket(&src.bucket).head(&src.key)?;
        let replace = if headers.has_metadata() || !extra.is_empty() {
            let metadata = if headers.has_metadata() {
                headers.metadata()
            } else {
                head.metadata.clone()
            };
            Some(ReplaceMetadata {
                metadata,
                content_headers: merge_headers(&head.content_headers, &extra),
            })
        } else {
            None
        };
        if src == dst && replace.is_none() {
            // S3 refuses it (400 InvalidRequest), some servers copy: one answer everywhere.
            return Err(StorageError::invalid(
                "copy",
                format!(
                    "{src}: a copy onto itself must change something: give x-amz-meta-* or \
                     content headers (or use update_metadata)"
                ),
            ));
        }
        self.bucket(&dst.bucket).copy(&CopyRequest {
            src,
            dst,
            replace,
            if_match: head.etag.clone(),
            size: Some(head.size),
            storage_class: None,
        })?;
        Ok(())
    }

    /// Delete `remote` (no error if it is already gone, as in S3).
    pub fn delete(&self, remote: impl Into<S3Name>) -> Result<()> {
        let obj = self.resolve(remote)?;
        self.bucket(&obj.bucket).delete(&obj.key, None)
    }

    /// Replace `remote`'s metadata with the `x-amz-meta-*` in `headers`, in place: a self-copy
    /// with `REPLACE`, the content and content headers untouched (other headers in `headers`,
    /// such as a new Content-Type, are applied), guarded by the ETag so a concurrent overwrite
    /// is never rolled back: if the object changes between the HEAD and the copy (412), the HEAD
    /// and the copy are done again (a few times), so the metadata lands on the new content
    /// (see [`super::metadata`]).
    pub fn update_metadata(&self, remote: impl Into<S3Name>, headers: &Headers) -> Result<()> {
        let obj = self.resolve(remote)?;
        let extra = headers.checked_for(&obj)?;
        let bucket = self.bucket(&obj.bucket);
        let read = |_attempt| bucket.head(&obj.key).map(CurrentMetadata::from);
        let edit = |current: &CurrentMetadata| {
            Ok(ReplaceMetadata {
                metadata: headers.metadata(),
                content_headers: merge_headers(&current.content_headers, &extra),
            })
        };
        match update_metadata(&bucket, &obj.key, read, edit) {
            Ok(_) => Ok(()),
            Err(UpdateError::Failed(e)) | Err(UpdateError::KeptChanging { last: e, .. }) => Err(e),
        }
    }
}

/// The metadata of `path` if it is a regular file, the one kind whose size is what reading it
/// to the end gives.
fn regular_file(
    path: &Path,
    meta: std::io::Result<std::fs::Metadata>,
) -> Result<std::fs::Metadata> {
    let meta = meta.map_err(|e| StorageError::io(path.display(), e))?;
    if meta.is_dir() {
        return Err(StorageError::io(
            path.display(),
            std::io::Error::from_raw_os_error(libc::EISDIR),
        ));
    }
    if !meta.is_file() {
        return Err(StorageError::invalid(
            "local file",
            format!(
                "{}: not a regular file (a FIFO, device or socket has no size to upload)",
                path.display()
            ),
        ));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_refuse_client_owned_names() {
        let h: Headers = [("Authorization", "x")].into_iter().collect();
        assert!(h.others().is_err());
        let h: Headers = [("Content-Type", "text/plain\r\nX: y")]
            .into_iter()
            .collect();
        assert!(h.others().is_err());
        let h: Headers = [("Content-Type", "text/plain"), ("x-amz-meta-a", "b")]
            .into_iter()
            .collect();
        assert_eq!(h.others().ok().map(|v| v.len()), Some(1));
        assert_eq!(h.metadata().get("a"), Some("b"));
        // `x-amz-meta-` alone names no entry: refused rather than dropped.
        let h: Headers = [("X-Amz-Meta-", "v")].into_iter().collect();
        assert!(h.has_metadata());
        assert!(h.metadata().is_empty());
        assert!(
            matches!(
                h.others(),
                Err(StorageError::InvalidInput {
                    what: "metadata name",
                    ..
                })
            ),
            "{:?}",
            h.others()
        );
    }
}
