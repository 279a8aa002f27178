//! [`MemoryStore`]: an S3 in memory, behind the same [`super::ObjectStore`] seam as the real server,
//! with switches for the failures and races that are hard to provoke against one.
//!
//! It is the ground truth of unit tests above the seam ([`super::Bucket`], the file system),
//! so it keeps S3's semantics, not a convenient approximation of them:
//! - **objects**: bytes, user metadata (read back as a HEAD returns it: values trimmed,
//!   through the same header encoding), content headers (Content-Type defaults to
//!   `binary/octet-stream`), ETag = MD5 of the bytes, Last-Modified in whole seconds;
//! - **conditions**: `If-Match` on GET (412), `If-None-Match: *` and `If-Match` on PUT and
//!   CompleteMultipartUpload (412; `If-Match` on a missing key is 404 NoSuchKey, as AWS
//!   answers), `x-amz-copy-source-if-match` on CopyObject and UploadPartCopy (412; moto
//!   ignores it, AWS does not);
//! - **multipart**: parts 1–10 000, every part but the last at least 5 MiB at completion
//!   (EntityTooSmall), parts named by number and ETag (InvalidPart, InvalidPartOrder), the
//!   object's ETag the MD5 of the parts' MD5s plus `-N`, NoSuchUpload once completed or
//!   aborted;
//! - **listing**: ListObjectsV2 with prefix, delimiter (common prefixes count as keys),
//!   max-keys (at most 1000), start-after and opaque continuation tokens; ListParts and
//!   ListMultipartUploads paged the same way; DeleteObjects in quiet mode;
//! - **errors** are the [`StorageError`]s the client produces for the same replies (one shared
//!   mapping, `error::error_for`), and what the client refuses before sending (a bad range,
//!   metadata it cannot encode, more than 1000 keys to delete) is refused here the same way.
//!
//! Switches, for tests (each request counts, whatever its outcome):
//! - [`MemoryStore::fail_next`]: the next N requests of an [`Operation`] fail with a
//!   [`Failure`] and are not applied (what the client reports after its retries);
//! - [`MemoryStore::lose_next_replies`]: the next N requests are applied, then answered with a
//!   network error: the lost reply that [`super::reconcile`] looks into;
//! - [`MemoryStore::delay`], [`MemoryStore::cut_next_bodies`] (a GET body that breaks after
//!   some bytes), [`MemoryStore::reject`] / [`MemoryStore::reject_with`] /
//!   [`MemoryStore::ignore`] a [`Capability`] (a server answering 501 or 400 to
//!   `If-None-Match`, `REPLACE` or DeleteObjects, or ignoring the copy-source condition as moto
//!   does), [`MemoryStore::opaque_etags`] (ETags that are not MD5s, as with SSE-KMS),
//!   [`MemoryStore::keep_long_keys`] (keys over 1024 bytes kept, as moto and Garage keep them),
//!   [`MemoryStore::stuck_listings`] (continuation tokens ignored);
//! - changes "behind the mount", as another client would make them, not counted:
//!   [`MemoryStore::put_behind`], [`MemoryStore::delete_behind`], and
//!   [`MemoryStore::before_next`] to make one just before a given request;
//! - [`MemoryStore::count`]: requests per operation.

mod listing;
mod multipart;
mod serve;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::error::{error_for, ErrorReply, Result, StorageError};
use super::meta::Metadata;
use super::operation::{Method, Operation};
pub use state::StoredObject;
use state::{Attributes, Condition, Refusal, State};

/// How an injected failure shows to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// An error reply with this HTTP status and S3 error code (`412`/`PreconditionFailed`,
    /// `503`/`SlowDown`, `500`/`InternalError`, `403`/`AccessDenied`, ...).
    Status(u16, &'static str),
    /// The connection broke before the server saw the request.
    Network,
    /// No reply in time, and the server did not act.
    Timeout,
    /// A 2xx reply that could not be understood (the server did not act).
    BadReply,
}

pub use super::capability::Capability;

type Hook = Box<dyn FnOnce(&MemoryStore) + Send>;

#[derive(Default)]
struct Switches {
    failures: HashMap<Operation, VecDeque<Failure>>,
    lost_replies: HashMap<Operation, u32>,
    delays: HashMap<Operation, Duration>,
    hooks: HashMap<Operation, VecDeque<Hook>>,
    cut_bodies: VecDeque<u64>,
    rejected: HashMap<Capability, (u16, &'static str)>,
    ignored: HashSet<Capability>,
    counts: BTreeMap<Operation, u64>,
    clock: Option<SystemTime>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    switches: Mutex<Switches>,
}

/// An S3 in memory (see the module note). Cheap to clone: clones share the same store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("requests", &self.shared.switches.lock().counts)
            .finish()
    }
}

impl MemoryStore {
    /// A store without buckets.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store holding one empty bucket.
    pub fn with_bucket(bucket: &str) -> Self {
        let store = MemoryStore::new();
        store.shared.state.lock().ensure_bucket(bucket);
        store
    }

    // ---- switches -------------------------------------------------------------------------

    /// The next `times` requests of `op` fail with `failure`, without being applied.
    pub fn fail_next(&self, op: Operation, times: u32, failure: Failure) {
        let mut sw = self.shared.switches.lock();
        let queue = sw.failures.entry(op).or_default();
        queue.extend((0..times).map(|_| failure.clone()));
    }

    /// The next `times` requests of `op` are applied, and their replies lost: the caller gets
    /// a network error.
    pub fn lose_next_replies(&self, op: Operation, times: u32) {
        *self
            .shared
            .switches
            .lock()
            .lost_replies
            .entry(op)
            .or_default() += times;
    }

    /// Every request of `op` waits `delay` before it is handled (zero: no more waiting).
    pub fn delay(&self, op: Operation, delay: Duration) {
        let mut sw = self.shared.switches.lock();
        if delay.is_zero() {
            sw.delays.remove(&op);
        } else {
            sw.delays.insert(op, delay);
        }
    }

    /// Run `hook` just before the next request of `op` is handled (to change objects behind
    /// the caller's back at the worst moment).
    pub fn before_next(&self, op: Operation, hook: impl FnOnce(&MemoryStore) + Send + 'static) {
        let mut sw = self.shared.switches.lock();
        sw.hooks.entry(op).or_default().push_back(Box::new(hook));
    }

    /// The bodies of the next `times` GETs break (an I/O error) after `after_bytes` bytes.
    pub fn cut_next_bodies(&self, times: u32, after_bytes: u64) {
        let mut sw = self.shared.switches.lock();
        sw.cut_bodies.extend((0..times).map(|_| after_bytes));
    }

    /// Answer requests that use `cap` with 501 NotImplemented.
    pub fn reject(&self, cap: Capability) {
        self.reject_with(cap, 501, "NotImplemented");
    }

    /// Answer requests that use `cap` with this status and code (a `400 InvalidArgument`, as
    /// some servers refuse a header they do not know).
    pub fn reject_with(&self, cap: Capability, status: u16, code: &'static str) {
        let mut sw = self.shared.switches.lock();
        sw.rejected.insert(cap, (status, code));
    }

    /// Act as if requests that use `cap` did not carry it.
    pub fn ignore(&self, cap: Capability) {
        self.shared.switches.lock().ignored.insert(cap);
    }

    /// Requests of `op` so far.
    pub fn count(&self, op: Operation) -> u64 {
        self.shared
            .switches
            .lock()
            .counts
            .get(&op)
            .copied()
            .unwrap_or(0)
    }

    /// Requests of every kind so far.
    pub fn total_requests(&self) -> u64 {
        self.shared.switches.lock().counts.values().sum()
    }

    /// Start counting from zero.
    pub fn reset_counts(&self) {
        self.shared.switches.lock().counts.clear();
    }

    /// From now on, give objects and parts ETags that are not the MD5s of their bytes, and
    /// multipart objects ETags that are not made of their parts' (as AWS does with SSE-KMS or
    /// SSE-C, and some gateways always do).
    pub fn opaque_etags(&self) {
        self.shared.state.lock().opaque_etags = true;
    }

    /// From now on, keep keys longer than S3's 1024 bytes, as moto and Garage do (S3 refuses
    /// them with `KeyTooLongError`, on reads too).
    pub fn keep_long_keys(&self) {
        self.shared.state.lock().long_keys = true;
    }

    /// From now on, answer a continued listing with its first page, whose token is the one
    /// sent again (as NooBaa 2.10 and RunPod's S3 API were reported to): a listing that never
    /// ends unless the client notices.
    pub fn stuck_listings(&self) {
        self.shared.state.lock().stuck_listings = true;
    }

    /// Stamp writes with `time` from now on (`None`: the real time).
    pub fn set_time(&self, time: Option<SystemTime>) {
        self.shared.switches.lock().clock = time;
    }

    // ---- behind the mount -----------------------------------------------------------------

    /// Store `data` under `bucket`/`key` as another client would (the bucket is created if
    /// needed); returns the ETag.
    pub fn put_behind(&self, bucket: &str, key: &str, data: impl Into<Vec<u8>>) -> String {
        self.put_behind_with(bucket, key, data, &Metadata::new(), &[])
    }

    /// [`MemoryStore::put_behind`] with user metadata and content headers (with
    /// `x-amz-tagging`: tags).
    pub fn put_behind_with(
        &self,
        bucket: &str,
        key: &str,
        data: impl Into<Vec<u8>>,
        metadata: &Metadata,
        content_headers: &[(String, String)],
    ) -> String {
        let data = data.into();
        // Content headers as S3 keeps them; an `x-amz-tagging` among them gives it tags.
        let (content_headers, tags) = match Attributes::stored(&[], content_headers) {
            Ok(a) => (a.content_headers, a.tags),
            Err(_) => (Vec::new(), None),
        };
        let attrs = Attributes {
            metadata: metadata.clone(),
            content_headers,
            tags,
        };
        let now = self.now();
        let mut state = self.shared.state.lock();
        state.ensure_bucket(bucket);
        let etag = state.etag_of(&data);
        let cond = Condition::default();
        // Cannot be refused: the bucket exists and nothing is conditional.
        let _ = state.put((bucket, key), data, etag.clone(), attrs, cond, now);
        etag
    }

    /// Delete `bucket`/`key` as another client would; `true` if it was there.
    pub fn delete_behind(&self, bucket: &str, key: &str) -> bool {
        self.shared.state.lock().remove(bucket, key)
    }

    /// The object under `bucket`/`key`, as stored now.
    pub fn object(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        self.shared.state.lock().stored(bucket, key)
    }

    /// Every key of `bucket`, in order.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.shared.state.lock().keys(bucket)
    }

    /// The multipart uploads in progress in `bucket`: (key, upload id).
    pub fn uploads(&self, bucket: &str) -> Vec<(String, String)> {
        self.shared.state.lock().upload_ids(bucket)
    }

    // ---- one request ----------------------------------------------------------------------

    fn now(&self) -> SystemTime {
        let now = self
            .shared
            .switches
            .lock()
            .clock
            .unwrap_or_else(SystemTime::now);
        // HTTP dates have whole seconds, so a HEAD never says more.
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Count the request, run the switches, apply it to the state, and answer as the client
    /// would.
    fn request<T>(
        &self,
        op: Operation,
        (bucket, key): (&str, &str),
        apply: impl FnOnce(&mut State, SystemTime) -> std::result::Result<T, Refusal>,
    ) -> Result<T> {
        let (hook, delay, failure) = {
            let mut sw = self.shared.switches.lock();
            *sw.counts.entry(op).or_default() += 1;
            let hook = sw.hooks.get_mut(&op).and_then(VecDeque::pop_front);
            let failure = sw.failures.get_mut(&op).and_then(VecDeque::pop_front);
            (hook, sw.delays.get(&op).copied(), failure)
        };
        if let Some(hook) = hook {
            hook(self);
        }
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        let what = format!("{} s3://{bucket}/{key}", op.method().as_str());
        if let Some(failure) = failure {
            return Err(injected(failure, op, (bucket, key), what));
        }
        let now = self.now();
        let outcome = apply(&mut self.shared.state.lock(), now);
        if self.take_lost_reply(op) {
            return Err(StorageError::Network {
                what,
                detail: "connection reset after the request was sent (injected)".into(),
            });
        }
        outcome.map_err(|r| refused(op, (bucket, key), r))
    }

    fn take_lost_reply(&self, op: Operation) -> bool {
        let mut sw = self.shared.switches.lock();
        match sw.lost_replies.get_mut(&op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// A write's condition as this server takes it: rejected (501), ignored, or kept.
    fn condition<'a>(
        &self,
        if_none_match_any: bool,
        if_match: Option<&'a str>,
    ) -> std::result::Result<Condition<'a>, Refusal> {
        let sw = self.shared.switches.lock();
        let mut cond = Condition {
            if_none_match_any,
            if_match,
        };
        for (used, cap) in [
            (if_none_match_any, Capability::IfNoneMatch),
            (if_match.is_some(), Capability::IfMatch),
        ] {
            if used {
                sw.refuse_if_rejected(cap)?;
            }
        }
        if sw.ignored.contains(&Capability::IfNoneMatch) {
            cond.if_none_match_any = false;
        }
        if sw.ignored.contains(&Capability::IfMatch) {
            cond.if_match = None;
        }
        Ok(cond)
    }

    /// `x-amz-copy-source-if-match` (`CopySourceIfMatch`) or `If-Match` on GET (`GetIfMatch`)
    /// as this server takes it: rejected, ignored, or kept.
    fn match_condition<'a>(
        &self,
        cap: Capability,
        if_match: Option<&'a str>,
    ) -> std::result::Result<Option<&'a str>, Refusal> {
        let sw = self.shared.switches.lock();
        if if_match.is_none() {
            return Ok(None);
        }
        sw.refuse_if_rejected(cap)?;
        Ok(if sw.ignored.contains(&cap) {
            None
        } else {
            if_match
        })
    }

    /// A request that uses `cap` (`MetadataReplace`, `DeleteObjects`): refused if rejected.
    fn uses(&self, cap: Capability) -> std::result::Result<(), Refusal> {
        self.shared.switches.lock().refuse_if_rejected(cap)
    }

    fn cut_body(&self) -> Option<u64> {
        self.shared.switches.lock().cut_bodies.pop_front()
    }
}

impl Switches {
    /// The refusal of a request that uses `cap`, if the server rejects it.
    fn refuse_if_rejected(&self, cap: Capability) -> std::result::Result<(), Refusal> {
        match self.rejected.get(&cap) {
            Some(&(status, code)) => Err(Refusal::new(
                status,
                code,
                format!(
                    "A header you provided implies functionality that is not implemented ({cap})"
                ),
            )),
            None => Ok(()),
        }
    }
}

/// The error the client reports for S3's refusal `r` of a request of kind `op`.
fn refused(op: Operation, (bucket, key): (&str, &str), r: Refusal) -> StorageError {
    let reply = ErrorReply {
        status: r.status,
        // A HEAD reply has no body, so no code.
        code: (op.method() != Method::Head).then(|| r.code.to_string()),
        message: r.message,
        request_id: None,
    };
    error_for(op, bucket, key, reply)
}

fn injected(failure: Failure, op: Operation, at: (&str, &str), what: String) -> StorageError {
    match failure {
        Failure::Status(status, code) => refused(op, at, Refusal::new(status, code, "injected")),
        Failure::Network => StorageError::Network {
            what,
            detail: "connection refused (injected)".into(),
        },
        Failure::Timeout => StorageError::Timeout { what },
        Failure::BadReply => StorageError::BadReply {
            what,
            detail: "unreadable reply (injected)".into(),
        },
    }
}
