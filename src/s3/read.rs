//! Reading objects: a byte range into memory, or a whole object into a file, both resumed
//! when a body breaks off.
//!
//! Integrity: a ranged read returns exactly the bytes asked for or an error. A body cut short
//! is resumed from the byte where it stopped with `If-Match` on the ETag of the first reply,
//! so the bytes never mix two versions (412 when the object changed meanwhile); a reply of
//! another length than asked is a bad reply, never patched. The caller's file is written in
//! order; [`crate::s3::Storage::read`] renames a download into place only once complete.

use std::fs::File;
use std::io::{Read, Write};

use super::capability::Capabilities;
use super::error::{Result, StorageError};
use super::fallback;
use super::name::ObjectRef;
use super::store::ObjectStore;
use super::types::ObjectInfo;

/// Bytes copied at a time from a body into a file.
const COPY_CHUNK: usize = 256 * 1024;

/// Read exactly `buf.len()` bytes at `offset` (fewer only at the end of the object) of the
/// version whose ETag is `etag` (any version when `None`). A body cut short is resumed with
/// `If-Match`, so the bytes never mix two versions, at most `max_attempts` times. Returns the
/// bytes read and the ETag. (`caps`: what the server was found not to implement, see
/// [`fallback::get`].)
pub(crate) fn read_range(
    store: &dyn ObjectStore,
    caps: &Capabilities,
    max_attempts: u32,
    obj: &ObjectRef,
    offset: u64,
    buf: &mut [u8],
    etag: Option<&str>,
) -> Result<(usize, Option<String>)> {
    let mut filled = 0usize;
    let mut etag = etag.map(str::to_string);
    let mut failures = 0u32;
    while filled < buf.len() {
        let start = offset + filled as u64;
        let end = offset + buf.len() as u64;
        let range = Some((start, end));
        let mut got = match fallback::get(store, caps, obj, range, etag.as_deref()) {
            Ok(g) => g,
            Err(StorageError::Http { status: 416, .. }) => break,
            Err(e) => return Err(e),
        };
        if etag.is_none() {
            etag = got.etag.clone();
        }
        let want = (end.min(got.total_size)).saturating_sub(start) as usize;
        if got.content_length as usize != want {
            return Err(StorageError::BadReply {
                what: format!("GET {obj}"),
                detail: format!(
                    "asked for {want} bytes at {start}, Content-Length says {}",
                    got.content_length
                ),
            });
        }
        let target = &mut buf[filled..filled + want];
        let mut n = 0usize;
        let mut broke = None;
        while n < want {
            match got.body.read(&mut target[n..]) {
                Ok(0) => {
                    broke = Some("connection closed before the end of the body".to_string());
                    break;
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    broke = Some(e.to_string());
                    break;
                }
            }
        }
        filled += n;
        if let Some(detail) = broke {
            failures += 1;
            if failures >= max_attempts {
                return Err(StorageError::Network {
                    what: format!("GET {obj}"),
                    detail,
                });
            }
            log::debug!(
                "GET {obj}: body cut short at {} ({detail}); resuming",
                start + n as u64
            );
            continue;
        }
        if want < end.saturating_sub(start) as usize {
            break; // end of object
        }
    }
    Ok((filled, etag))
}

/// Download a whole object into `out` (from its current position). A body cut short is
/// resumed at the byte where it stopped, pinned with `If-Match` to the first reply's ETag, at
/// most `max_attempts` times.
pub(crate) fn download(
    store: &dyn ObjectStore,
    caps: &Capabilities,
    max_attempts: u32,
    obj: &ObjectRef,
    out: &mut File,
) -> Result<ObjectInfo> {
    let first = store.get_object(obj, None, None)?;
    let info = first.info.clone();
    let total = first.total_size;
    let etag = first.etag.clone();
    let mut body = first.body;
    let mut written = 0u64;
    let mut failures = 0u32;
    loop {
        let detail = match copy_counting(&mut body, out) {
            Ok(n) => {
                written += n;
                if written == total {
                    return Ok(info);
                }
                format!("body ended after {written} of {total} bytes")
            }
            Err((_, CopyError::Write(e))) => return Err(StorageError::io("local file", e)),
            Err((n, CopyError::Read(e))) => {
                written += n;
                e.to_string()
            }
        };
        if written > total {
            return Err(StorageError::BadReply {
                what: format!("GET {obj}"),
                detail: format!("body longer than its Content-Length ({written} > {total})"),
            });
        }
        failures += 1;
        if failures >= max_attempts {
            return Err(StorageError::Network {
                what: format!("GET {obj}"),
                detail,
            });
        }
        log::debug!("GET {obj}: {detail}; resuming at byte {written}");
        let rest = Some((written, total));
        body = fallback::get(store, caps, obj, rest, etag.as_deref())?.body;
    }
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copy until EOF; on error, say how many bytes were written first and which side failed.
fn copy_counting(from: &mut dyn Read, to: &mut File) -> std::result::Result<u64, (u64, CopyError)> {
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut n = 0u64;
    loop {
        let k = match from.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((n, CopyError::Read(e))),
        };
        to.write_all(&buf[..k])
            .map_err(|e| (n, CopyError::Write(e)))?;
        n += k as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::body::RequestBody;
    use crate::s3::memory::{Failure, MemoryStore};
    use crate::s3::operation::Operation;
    use crate::s3::types::PutOptions;
    use std::io::{Seek, SeekFrom};

    const ATTEMPTS: u32 = 4;

    fn caps() -> Capabilities {
        Capabilities::new()
    }

    fn stored(data: &[u8]) -> (MemoryStore, ObjectRef) {
        let store = MemoryStore::with_bucket("b");
        let obj = ObjectRef {
            bucket: "b".into(),
            key: "k".into(),
        };
        store
            .put_object(&obj, RequestBody::Bytes(data), &PutOptions::default())
            .unwrap();
        (store, obj)
    }

    fn data() -> Vec<u8> {
        (0..100_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn ranges_are_exact_and_end_at_the_object() {
        let data = data();
        let (store, obj) = stored(&data);
        let mut buf = vec![0u8; 1000];
        let (n, etag) = read_range(&store, &caps(), ATTEMPTS, &obj, 500, &mut buf, None).unwrap();
        assert_eq!((n, &buf[..]), (1000, &data[500..1500]));
        assert_eq!(etag, store.object("b", "k").map(|o| o.etag));
        let (n, _) = read_range(&store, &caps(), ATTEMPTS, &obj, 99_900, &mut buf, None).unwrap();
        assert_eq!((n, &buf[..n]), (100, &data[99_900..]));
        let (n, _) = read_range(&store, &caps(), ATTEMPTS, &obj, 200_000, &mut buf, None).unwrap();
        assert_eq!(n, 0, "past the end: nothing, not an error");
    }

    #[test]
    fn a_cut_body_is_resumed_pinned_to_its_version() {
        let data = data();
        let (store, obj) = stored(&data);
        store.cut_next_bodies(2, 300);
        let mut buf = vec![0u8; 1000];
        let (n, _) = read_range(&store, &caps(), ATTEMPTS, &obj, 10, &mut buf, None).unwrap();
        assert_eq!((n, &buf[..]), (1000, &data[10..1010]));
        assert_eq!(store.count(Operation::GetObject), 3);
        // Changed between the cut and the resumed GET: refused (412), never mixed.
        store.cut_next_bodies(1, 300);
        store.before_next(Operation::GetObject, |_| {});
        store.before_next(Operation::GetObject, |s| {
            s.put_behind("b", "k", "new");
        });
        let e = read_range(&store, &caps(), ATTEMPTS, &obj, 0, &mut buf, None).unwrap_err();
        assert!(e.is_precondition_failed(), "{e:?}");
    }

    #[test]
    fn a_body_that_keeps_breaking_is_a_network_error() {
        let (store, obj) = stored(&data());
        store.cut_next_bodies(ATTEMPTS, 10);
        let mut buf = vec![0u8; 1000];
        let e = read_range(&store, &caps(), ATTEMPTS, &obj, 0, &mut buf, None).unwrap_err();
        assert!(matches!(e, StorageError::Network { .. }), "{e:?}");
        assert_eq!(store.count(Operation::GetObject), u64::from(ATTEMPTS));
    }

    #[test]
    fn downloads_resume_where_the_body_stopped() {
        let data = data();
        let (store, obj) = stored(&data);
        store.cut_next_bodies(2, 40_000);
        let mut out = tempfile::tempfile().unwrap();
        let info = download(&store, &caps(), ATTEMPTS, &obj, &mut out).unwrap();
        assert_eq!(info.size, data.len() as u64);
        out.seek(SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        out.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(store.count(Operation::GetObject), 3);
        store.fail_next(
            Operation::GetObject,
            1,
            Failure::Status(403, "AccessDenied"),
        );
        let mut out = tempfile::tempfile().unwrap();
        assert!(matches!(
            download(&store, &caps(), ATTEMPTS, &obj, &mut out),
            Err(StorageError::AccessDenied { .. })
        ));
    }
}
