//! Parts of S3 some servers do not implement, and how a [`super::Bucket`] learns which.
//!
//! s3mount relies on a few request headers and one request that S3-compatible servers differ
//! on ([`Capability`]). A server may honour one, ignore it (nothing in the reply tells, so
//! nothing can be done: docs/servers.md lists what the tested servers ignore), or reject the
//! request that carries it — `501 NotImplemented`, or a `400` naming no other fault. A
//! rejection is learnt on first use: the request is sent again with the weaker behaviour of
//! [`super::fallback`], and when that succeeds the capability is recorded in the bucket's
//! [`Capabilities`] (shared by its clones and by every bucket of one
//! [`super::Storage`]), with one warning in the log saying what the weaker behaviour means.
//! From then on requests leave it out. Nothing is probed: no request is made to find out, and
//! nothing is written into the user's bucket but the user's own writes.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::error::{Result, StorageError};
use super::name::MAX_KEY_BYTES;

/// A part of S3 some servers do not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `If-None-Match: *` on PutObject and CompleteMultipartUpload (an exclusive create).
    IfNoneMatch,
    /// `If-Match` on PutObject and CompleteMultipartUpload (replace only that version).
    IfMatch,
    /// `If-Match` on GetObject (read only that version).
    GetIfMatch,
    /// `x-amz-copy-source-if-match` on CopyObject and UploadPartCopy.
    CopySourceIfMatch,
    /// `x-amz-metadata-directive: REPLACE` on CopyObject (change metadata in place).
    MetadataReplace,
    /// The DeleteObjects request (many keys in one).
    DeleteObjects,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 6] = [
        Capability::IfNoneMatch,
        Capability::IfMatch,
        Capability::GetIfMatch,
        Capability::CopySourceIfMatch,
        Capability::MetadataReplace,
        Capability::DeleteObjects,
    ];

    /// What a request carries to use it, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Capability::IfNoneMatch => "If-None-Match: * on PUT",
            Capability::IfMatch => "If-Match on PUT",
            Capability::GetIfMatch => "If-Match on GET",
            Capability::CopySourceIfMatch => "x-amz-copy-source-if-match",
            Capability::MetadataReplace => "x-amz-metadata-directive: REPLACE",
            Capability::DeleteObjects => "DeleteObjects",
        }
    }

    /// What s3mount does instead, and what that means for the user (the warning's text; the
    /// same as the table in docs/servers.md).
    pub fn fallback(self) -> &'static str {
        match self {
            Capability::IfNoneMatch => {
                "an exclusive create (O_EXCL, as cp makes; mkdir) is checked with a HEAD first; \
                 an object another client creates between that HEAD and the upload is overwritten"
            }
            Capability::IfMatch => {
                "a write meant to replace one version is checked with a HEAD first; another \
                 client's write between that HEAD and the upload is overwritten"
            }
            Capability::GetIfMatch => {
                "ranged reads are sent unconditionally and the reply's ETag is compared with the \
                 version read: a changed object still fails the read with EIO, never mixes versions"
            }
            Capability::CopySourceIfMatch => {
                "a copy (rename, metadata change) checks its source with a HEAD first; a change \
                 by another client between that HEAD and the copy is not noticed (a metadata \
                 change may then put the old metadata set on the new content)"
            }
            Capability::MetadataReplace => {
                "a metadata change (setfattr, chmod, chown, touch) of a closed file re-uploads the \
                 object (GET, then PUT with the new metadata), for objects up to 64 MiB; larger \
                 ones answer ENOTSUP"
            }
            Capability::DeleteObjects => {
                "the sources of a directory rename are deleted one DeleteObject per key"
            }
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities (the ones a request leaves out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSet(u8);

impl CapSet {
    /// The empty set.
    pub const NONE: CapSet = CapSet(0);

    /// Is `cap` in the set?
    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// The set with `cap` added.
    pub fn with(self, cap: Capability) -> CapSet {
        CapSet(self.0 | cap.bit())
    }

    fn of(caps: &[Capability]) -> CapSet {
        caps.iter().fold(CapSet::NONE, |s, c| s.with(*c))
    }

    fn members(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

/// The capabilities a server was found to reject (see the module note). Starts empty.
///
/// Beside them, one limit some servers have and others not: keys longer than
/// [`MAX_KEY_BYTES`]. Amazon S3 refuses them (`KeyTooLongError`), and so do servers that follow
/// it (s3s-fs); moto and Garage keep them, so a deep path there works as on a disk. Known from
/// the start for Amazon's own endpoints, learnt elsewhere from the first refusal.
#[derive(Debug, Default)]
pub struct Capabilities {
    rejected: AtomicU8,
    limits_keys: AtomicBool,
}

impl Capabilities {
    /// Nothing learnt yet: every capability is used.
    pub fn new() -> Self {
        Capabilities::default()
    }

    /// Was `cap` found rejected?
    pub fn rejects(&self, cap: Capability) -> bool {
        self.set().contains(cap)
    }

    /// Every capability found rejected so far.
    pub fn rejected(&self) -> Vec<Capability> {
        self.set().members().collect()
    }

    fn set(&self) -> CapSet {
        CapSet(self.rejected.load(Ordering::Relaxed))
    }

    /// Does the server refuse keys longer than [`MAX_KEY_BYTES`]? (Known so far.)
    pub fn limits_keys(&self) -> bool {
        self.limits_keys.load(Ordering::Relaxed)
    }

    /// The server is one that refuses keys longer than [`MAX_KEY_BYTES`] (Amazon S3's own
    /// endpoints), known before any request.
    pub fn assume_key_limit(&self) {
        self.limits_keys.store(true, Ordering::Relaxed);
    }

    /// Learn from `e`, the answer to a request on `key`, whether the server refuses keys
    /// longer than [`MAX_KEY_BYTES`]; the first time, one line in the log.
    pub fn learn_key_limit(&self, key: &str, e: &StorageError) {
        if key.len() > MAX_KEY_BYTES
            && e.is_key_too_long()
            && !self.limits_keys.swap(true, Ordering::Relaxed)
        {
            log::info!(
                "the server refuses keys over {MAX_KEY_BYTES} bytes ({e}); from now on a path whose key would be longer is ENAMETOOLONG at once"
            );
        }
    }

    /// Record that the server rejects `cap` (`why`: its refusal); the first time, one warning.
    pub fn learn(&self, cap: Capability, why: &StorageError) {
        let before = self.rejected.fetch_or(cap.bit(), Ordering::Relaxed);
        if before & cap.bit() == 0 {
            log::warn!(
                "the server does not implement {cap} ({why}); from now on {}",
                cap.fallback()
            );
        }
    }
}

/// Is `e` a server's refusal of something in the request it does not implement (rather than
/// of the request itself)? `501`, or a `400`/`405` whose code names no other fault. A `400`
/// is only a guess: the capability is learnt only once the request without it succeeded.
pub(crate) fn is_rejection(e: &StorageError) -> bool {
    match e {
        StorageError::Http { status: 501, .. } => true,
        StorageError::Http {
            status: 400 | 405,
            code,
            ..
        } => matches!(
            code.as_deref(),
            None | Some(
                "NotImplemented"
                    | "NotSupported"
                    | "UnsupportedOperation"
                    | "InvalidArgument"
                    | "InvalidRequest"
                    | "MethodNotAllowed"
            )
        ),
        _ => false,
    }
}

/// Run a request that would use the capabilities `used` (in the order their weaker behaviours
/// are tried): `attempt(without)` sends it leaving out the capabilities in `without`, with
/// their weaker behaviours. Those already learnt are left out from the start. When the server
/// rejects the request ([`is_rejection`]), each capability not yet left out is tried without,
/// one at a time, then all together; the first attempt that succeeds teaches which are
/// rejected. An attempt that fails otherwise ends it with its error; when every attempt was
/// rejected, the first refusal is the answer (it was not about a capability).
pub(crate) fn with_fallbacks<T>(
    caps: &Capabilities,
    used: &[Capability],
    mut attempt: impl FnMut(CapSet) -> Result<T>,
) -> Result<T> {
    let used_set = CapSet::of(used);
    let known = CapSet(caps.set().0 & used_set.0);
    let first = match attempt(known) {
        Err(e) if is_rejection(&e) => e,
        done => return done,
    };
    let untried: Vec<Capability> = used
        .iter()
        .copied()
        .filter(|c| !known.contains(*c))
        .collect();
    let mut tries: Vec<CapSet> = untried.iter().map(|c| known.with(*c)).collect();
    if untried.len() > 1 {
        tries.push(untried.iter().fold(known, |s, c| s.with(*c)));
    }
    for without in tries {
        match attempt(without) {
            Ok(v) => {
                for cap in untried.iter().filter(|c| without.contains(**c)) {
                    caps.learn(*cap, &first);
                }
                return Ok(v);
            }
            Err(e) if is_rejection(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn http(status: u16, code: Option<&str>) -> StorageError {
        StorageError::Http {
            status,
            code: code.map(str::to_string),
            message: String::new(),
            bucket: "b".into(),
            key: "k".into(),
            request_id: None,
        }
    }

    fn not_implemented() -> StorageError {
        http(501, Some("NotImplemented"))
    }

    #[test]
    fn a_key_limit_is_learnt_only_from_a_long_keys_refusal() {
        let caps = Capabilities::new();
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let too_long = http(400, Some("KeyTooLongError"));
        caps.learn_key_limit("short", &too_long);
        caps.learn_key_limit(&long, &http(400, Some("InvalidArgument")));
        caps.learn_key_limit(&long, &http(500, None));
        assert!(!caps.limits_keys());
        caps.learn_key_limit(&long, &too_long);
        assert!(caps.limits_keys());
        let aws = Capabilities::new();
        aws.assume_key_limit();
        assert!(aws.limits_keys());
    }

    #[test]
    fn rejections_are_501_and_plain_400s() {
        assert!(is_rejection(&not_implemented()));
        assert!(is_rejection(&http(501, None)));
        assert!(is_rejection(&http(400, Some("InvalidArgument"))));
        assert!(is_rejection(&http(400, None)));
        assert!(is_rejection(&http(405, Some("MethodNotAllowed"))));
        for other in [
            http(400, Some("EntityTooSmall")),
            http(400, Some("MetadataTooLarge")),
            http(400, Some("InvalidPart")),
            http(500, Some("InternalError")),
            http(403, Some("AccessDenied")),
            StorageError::PreconditionFailed {
                bucket: "b".into(),
                key: "k".into(),
            },
        ] {
            assert!(!is_rejection(&other), "{other}");
        }
    }

    /// Run `with_fallbacks` with an attempt that is rejected while it uses any of `rejected`;
    /// returns the result and the sets each attempt left out.
    fn run(
        caps: &Capabilities,
        used: &[Capability],
        rejected: &[Capability],
    ) -> (Result<u8>, Vec<CapSet>) {
        let tried = RefCell::new(Vec::new());
        let r = with_fallbacks(caps, used, |without| {
            tried.borrow_mut().push(without);
            let uses_rejected = used
                .iter()
                .any(|c| rejected.contains(c) && !without.contains(*c));
            if uses_rejected {
                Err(not_implemented())
            } else {
                Ok(7)
            }
        });
        (r, tried.into_inner())
    }

    #[test]
    fn a_rejected_capability_is_learnt_once_and_left_out_from_then_on() {
        let caps = Capabilities::new();
        let used = [Capability::IfNoneMatch];
        let (r, tried) = run(&caps, &used, &used);
        assert_eq!(r.ok(), Some(7));
        assert_eq!(
            tried,
            [CapSet::NONE, CapSet::NONE.with(Capability::IfNoneMatch)]
        );
        assert_eq!(caps.rejected(), [Capability::IfNoneMatch]);
        let (r, tried) = run(&caps, &used, &used);
        assert_eq!(r.ok(), Some(7));
        assert_eq!(
            tried,
            [CapSet::NONE.with(Capability::IfNoneMatch)],
            "no rejected request any more"
        );
        // Requests that do not use it are unaffected.
        let (_, tried) = run(&caps, &[], &[]);
        assert_eq!(tried, [CapSet::NONE]);
    }

    #[test]
    fn of_two_capabilities_only_the_rejected_one_is_learnt() {
        let caps = Capabilities::new();
        let used = [Capability::CopySourceIfMatch, Capability::MetadataReplace];
        let (r, tried) = run(&caps, &used, &[Capability::MetadataReplace]);
        assert_eq!(r.ok(), Some(7));
        assert_eq!(
            tried.len(),
            3,
            "all, without the first, without the second: {tried:?}"
        );
        assert_eq!(caps.rejected(), [Capability::MetadataReplace]);
        // Both rejected: learnt together by the last try.
        let caps = Capabilities::new();
        let (r, tried) = run(&caps, &used, &used);
        assert_eq!(r.ok(), Some(7));
        assert_eq!(tried.len(), 4);
        assert_eq!(caps.rejected(), used);
    }

    #[test]
    fn a_refusal_no_fallback_avoids_is_the_answer_and_nothing_is_learnt() {
        let caps = Capabilities::new();
        let tried = RefCell::new(0);
        let r: Result<()> = with_fallbacks(&caps, &[Capability::DeleteObjects], |_| {
            *tried.borrow_mut() += 1;
            Err(http(400, Some("InvalidArgument")))
        });
        assert!(matches!(r, Err(StorageError::Http { status: 400, .. })));
        assert_eq!(*tried.borrow(), 2);
        assert!(caps.rejected().is_empty());
        // Another error of the weaker attempt ends it, nothing learnt either.
        let r: Result<()> = with_fallbacks(&caps, &[Capability::GetIfMatch], |without| {
            if without.contains(Capability::GetIfMatch) {
                Err(StorageError::PreconditionFailed {
                    bucket: "b".into(),
                    key: "k".into(),
                })
            } else {
                Err(not_implemented())
            }
        });
        assert!(r.is_err_and(|e| e.is_precondition_failed()));
        assert!(caps.rejected().is_empty());
        // Other errors of the first attempt are not rejections: no second attempt.
        let mut n = 0;
        let r: Result<()> = with_fallbacks(&caps, &[Capability::IfMatch], |_| {
            n += 1;
            Err(http(500, Some("InternalError")))
        });
        assert!(r.is_err());
        assert_eq!(n, 1);
    }
}
