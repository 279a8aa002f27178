//! `StorageError`: every way an S3 operation can fail, with the errno the file system answers.
//!
//! One enum for the whole library so that callers (the seed-style `Storage` API and the FUSE
//! layer alike) match on meaning — not found, denied, precondition failed, the network — rather
//! than on HTTP details. Messages name the bucket, the key and the S3 error code, so a log line
//! is enough to tell what happened; they never contain credentials.

use std::fmt;

use super::name::MAX_KEY_BYTES;
use super::operation::Operation;

/// An S3 (or local I/O) failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object (or the bucket, when `key` is empty) does not exist: 404.
    #[error("s3://{bucket}/{key}: not found{}", code_suffix(.code))]
    NotFound {
        /// Bucket asked for.
        bucket: String,
        /// Key asked for ("" for a bucket-level request).
        key: String,
        /// S3 error code (`NoSuchKey`, `NoSuchBucket`, `NoSuchUpload`), when the server sent one.
        code: Option<String>,
    },
    /// The bucket does not exist.
    #[error("bucket {bucket:?} does not exist (NoSuchBucket)")]
    NoSuchBucket {
        /// Bucket asked for.
        bucket: String,
    },
    /// 403: the credentials are wrong, or the policy does not allow the action.
    #[error("s3://{bucket}/{key}: access denied ({code}{}): {message}{}", action_hint(.code, .action), request_id_suffix(.request_id))]
    AccessDenied {
        /// Bucket asked for.
        bucket: String,
        /// Key asked for.
        key: String,
        /// `AccessDenied`, `SignatureDoesNotMatch`, `InvalidAccessKeyId`, ...
        code: String,
        /// Server's message.
        message: String,
        /// The IAM action that the request needed (e.g. `s3:ListBucket`).
        action: Option<&'static str>,
        /// `x-amz-request-id` of the reply.
        request_id: Option<String>,
    },
    /// 412: an `If-Match` / `If-None-Match` / copy-source condition did not hold.
    #[error("s3://{bucket}/{key}: precondition failed (the object changed or already exists)")]
    PreconditionFailed {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// Any other error reply from the server.
    #[error("s3://{bucket}/{key}: HTTP {status}{}: {message}{}", code_suffix(.code), request_id_suffix(.request_id))]
    Http {
        /// HTTP status.
        status: u16,
        /// S3 error code, if the body carried one.
        code: Option<String>,
        /// Server's message (or a short excerpt of the body).
        message: String,
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// `x-amz-request-id` of the reply.
        request_id: Option<String>,
    },
    /// The server could not be reached or the connection broke (after retries).
    #[error("{what}: network error: {detail}")]
    Network {
        /// What was being done, e.g. `GET s3://b/k`.
        what: String,
        /// The transport's error.
        detail: String,
    },
    /// No reply within the configured timeout (after retries).
    #[error("{what}: timed out")]
    Timeout {
        /// What was being done.
        what: String,
    },
    /// A write whose reply was lost (a network error or timeout after the request went out, an
    /// unreadable reply) and whose effect the server could not be asked about: it may or may
    /// not have been applied. Never taken as "not applied": see [`crate::s3::reconcile`].
    #[error("{what}: outcome unknown (the write may or may not be on the server): {detail}")]
    OutcomeUnknown {
        /// What was being done.
        what: String,
        /// What failed, and why looking could not tell.
        detail: String,
    },
    /// Something the server does not implement, and s3mount has no weaker way to do (see
    /// [`crate::s3::capability`]).
    #[error("{what}: not supported by the server: {detail}")]
    Unsupported {
        /// What was being done.
        what: String,
        /// What the server lacks.
        detail: String,
    },
    /// The server's reply was not what S3 sends (bad XML, missing header, short body...).
    #[error("{what}: bad reply from server: {detail}")]
    BadReply {
        /// What was being done.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A key, bucket, metadata name or value the library refuses before sending anything.
    #[error("invalid {what}: {detail}")]
    InvalidInput {
        /// What was invalid ("key", "metadata name", ...).
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// An `S3Name` without a bucket, and the `Storage` has no default bucket.
    #[error("no bucket given for key {key:?} and no default bucket configured")]
    NoBucket {
        /// The key.
        key: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The local path (or a description).
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
}

fn request_id_suffix(id: &Option<String>) -> String {
    id.as_ref()
        .map(|i| format!(" [request id {i}]"))
        .unwrap_or_default()
}

/// What to check: the keys for signature/key-id errors, the policy for a plain denial.
fn action_hint(code: &str, action: &Option<&'static str>) -> String {
    match code {
        "SignatureDoesNotMatch" => "; check the secret access key".to_string(),
        "InvalidAccessKeyId" => "; check the access key id".to_string(),
        "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired" => {
            "; the session token is invalid or expired".to_string()
        }
        // GET of an object in GLACIER or DEEP_ARCHIVE, and a copy of one.
        "InvalidObjectState" | "ObjectNotInActiveTierError" => {
            "; the object is archived: restore it first (RestoreObject)".to_string()
        }
        _ => action
            .map(|a| format!("; the policy must allow {a}"))
            .unwrap_or_default(),
    }
}

/// Result alias used throughout the library.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// The errno a file system call should answer for this error.
    ///
    /// 404 → ENOENT, 403 → EACCES, 412 → EIO (callers that create with `O_EXCL` map it to
    /// EEXIST themselves), invalid input → EINVAL, network/timeouts/5xx → EIO.
    pub fn errno(&self) -> i32 {
        match self {
            StorageError::NotFound { .. } | StorageError::NoSuchBucket { .. } => libc::ENOENT,
            StorageError::AccessDenied { .. } => libc::EACCES,
            StorageError::PreconditionFailed { .. } => libc::EIO,
            StorageError::Http { status, code, .. } => match (*status, code.as_deref()) {
                (416, _) => libc::EINVAL,
                (_, Some("EntityTooLarge")) => libc::EFBIG,
                (_, Some("KeyTooLongError")) => libc::ENAMETOOLONG,
                (_, Some("MetadataTooLarge")) => libc::E2BIG,
                (400, Some("InvalidArgument")) => libc::EINVAL,
                (409, _) => libc::EBUSY,
                _ => libc::EIO,
            },
            StorageError::Network { .. } | StorageError::Timeout { .. } => libc::EIO,
            StorageError::BadReply { .. } | StorageError::OutcomeUnknown { .. } => libc::EIO,
            StorageError::InvalidInput { .. } => libc::EINVAL,
            StorageError::NoBucket { .. } => libc::EINVAL,
            StorageError::Unsupported { .. } => libc::ENOTSUP,
            StorageError::Io { source, .. } => io_errno(source),
        }
    }

    /// True for a missing object or bucket.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StorageError::NotFound { .. } | StorageError::NoSuchBucket { .. }
        )
    }

    /// True for a key the server refuses as too long (`KeyTooLongError`; a HEAD's bare `400`
    /// for a key over S3's limit is read as one).
    pub fn is_key_too_long(&self) -> bool {
        matches!(self, StorageError::Http { code: Some(c), .. } if c == "KeyTooLongError")
    }

    /// True for a failed `If-Match` / `If-None-Match` condition.
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, StorageError::PreconditionFailed { .. })
    }

    /// True when a write may have been applied although it failed (see
    /// [`StorageError::OutcomeUnknown`]): it must be neither reported as done nor redone
    /// blindly.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, StorageError::OutcomeUnknown { .. })
    }

    /// True when retrying the same request later may succeed (network, timeout, 5xx, throttling).
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Network { .. } | StorageError::Timeout { .. } => true,
            StorageError::Http { status, code, .. } => {
                is_retryable_status(*status, code.as_deref())
            }
            _ => false,
        }
    }

    pub(crate) fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        StorageError::InvalidInput {
            what,
            detail: detail.into(),
        }
    }
}

/// The errno of a local I/O error: its OS code, or, for an error made without one (tempfile
/// wraps the OS error of a temp file it cannot create in one of its own), the errno of its kind.
fn io_errno(e: &std::io::Error) -> i32 {
    use std::io::ErrorKind;
    if let Some(code) = e.raw_os_error() {
        return code;
    }
    match e.kind() {
        ErrorKind::NotFound => libc::ENOENT,
        ErrorKind::PermissionDenied => libc::EACCES,
        ErrorKind::AlreadyExists => libc::EEXIST,
        ErrorKind::NotADirectory => libc::ENOTDIR,
        ErrorKind::IsADirectory => libc::EISDIR,
        ErrorKind::ReadOnlyFilesystem => libc::EROFS,
        ErrorKind::StorageFull => libc::ENOSPC,
        ErrorKind::InvalidInput => libc::EINVAL,
        _ => libc::EIO,
    }
}

/// Statuses and codes worth another try: S3 asks clients to retry these with backoff.
pub(crate) fn is_retryable_status(status: u16, code: Option<&str>) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
        || matches!(
            code,
            Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")
        )
}

/// An error reply as the server sent it.
#[derive(Debug, Clone)]
pub(crate) struct ErrorReply {
    /// HTTP status (not 2xx).
    pub status: u16,
    /// S3 error code of the body; `None` when there was none (always for HEAD, which has no
    /// body).
    pub code: Option<String>,
    /// The body's message, or an excerpt of the body.
    pub message: String,
    /// `x-amz-request-id`.
    pub request_id: Option<String>,
}

/// The [`StorageError`] for an error reply to a request of kind `op` on `bucket`/`key`. One
/// mapping for the client and for [`super::memory::MemoryStore`], so the in-memory store
/// fails exactly as a server reached through the client does.
pub(crate) fn error_for(op: Operation, bucket: &str, key: &str, reply: ErrorReply) -> StorageError {
    let ErrorReply {
        status,
        code,
        message,
        request_id,
    } = reply;
    let bucket = bucket.to_string();
    let key = key.to_string();
    match (status, code.as_deref()) {
        (404, Some("NoSuchBucket")) => StorageError::NoSuchBucket { bucket },
        // A HEAD has no body to say which: on the bucket itself, the bucket is missing.
        (404, _) if op == Operation::HeadBucket => StorageError::NoSuchBucket { bucket },
        (404, _) => StorageError::NotFound { bucket, key, code },
        (403, _) => StorageError::AccessDenied {
            bucket,
            key,
            code: code.unwrap_or_else(|| "AccessDenied".to_string()),
            message,
            action: Some(op.iam_action()),
            request_id,
        },
        (412, _) => StorageError::PreconditionFailed { bucket, key },
        // A HEAD has no body: a bare 400 for a key over S3's limit is the KeyTooLongError a
        // GET of it would name (Amazon S3 and s3s-fs answer so).
        (400, None) if op == Operation::HeadObject && key.len() > MAX_KEY_BYTES => {
            StorageError::Http {
                status,
                code: Some("KeyTooLongError".into()),
                message: format!("a HEAD of a key over {MAX_KEY_BYTES} bytes refused"),
                bucket,
                key,
                request_id,
            }
        }
        _ => StorageError::Http {
            status,
            code,
            message,
            bucket,
            key,
            request_id,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heads_bare_400_for_a_long_key_is_key_too_long() {
        let reply = || ErrorReply {
            status: 400,
            code: None,
            message: String::new(),
            request_id: None,
        };
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let e = error_for(Operation::HeadObject, "b", &long, reply());
        assert!(e.is_key_too_long(), "{e}");
        assert_eq!(e.errno(), libc::ENAMETOOLONG);
        for (op, key) in [
            (Operation::HeadObject, "short"),
            (Operation::GetObject, long.as_str()),
        ] {
            let e = error_for(op, "b", key, reply());
            assert!(!e.is_key_too_long(), "{op} {e}");
            assert_eq!(e.errno(), libc::EIO);
        }
    }

    #[test]
    fn errno_mapping() {
        let nf = StorageError::NotFound {
            bucket: "b".into(),
            key: "k".into(),
            code: Some("NoSuchKey".into()),
        };
        assert_eq!(nf.errno(), libc::ENOENT);
        assert!(nf.is_not_found());
        assert_eq!(nf.to_string(), "s3://b/k: not found (NoSuchKey)");
        let denied = StorageError::AccessDenied {
            bucket: "b".into(),
            key: "".into(),
            code: "AccessDenied".into(),
            message: "nope".into(),
            action: Some("s3:ListBucket"),
            request_id: Some("R1".into()),
        };
        assert_eq!(denied.errno(), libc::EACCES);
        assert!(denied.to_string().contains("s3:ListBucket"));
        let archived = StorageError::AccessDenied {
            bucket: "b".into(),
            key: "k".into(),
            code: "InvalidObjectState".into(),
            message: "The operation is not valid for the object's storage class".into(),
            action: Some("s3:GetObject"),
            request_id: None,
        };
        assert_eq!(archived.errno(), libc::EACCES);
        assert!(archived.to_string().contains("archived: restore it first"));
        assert!(!archived.to_string().contains("policy"));
        assert!(denied.to_string().contains("R1"));
        let slow = StorageError::Http {
            status: 503,
            code: Some("SlowDown".into()),
            message: "".into(),
            bucket: "b".into(),
            key: "k".into(),
            request_id: None,
        };
        assert!(slow.is_transient());
        assert_eq!(slow.errno(), libc::EIO);
        let range = StorageError::Http {
            status: 416,
            code: Some("InvalidRange".into()),
            message: "".into(),
            bucket: "b".into(),
            key: "k".into(),
            request_id: None,
        };
        assert_eq!(range.errno(), libc::EINVAL);
        assert!(!range.is_transient());
    }

    #[test]
    fn local_errors_keep_their_errno_with_or_without_an_os_code() {
        let io = |e| StorageError::io("/some/path", e);
        let os = io(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(os.errno(), libc::ENOSPC);
        // As tempfile gives it: the kind kept, the OS code not.
        let wrapped = io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2) at path \"/x/.tmp\"",
        ));
        assert_eq!(wrapped.errno(), libc::ENOENT);
        let other = io(std::io::Error::other("anything else"));
        assert_eq!(other.errno(), libc::EIO);
        assert!(os.to_string().starts_with("/some/path: "), "{os}");
    }

    #[test]
    fn denied_requests_name_their_operations_action() {
        let denied = |op| {
            let reply = ErrorReply {
                status: 403,
                code: None,
                message: "m".into(),
                request_id: None,
            };
            error_for(op, "b", "k", reply)
        };
        for op in Operation::ALL {
            match denied(op) {
                StorageError::AccessDenied { action, code, .. } => {
                    assert_eq!(action, Some(op.iam_action()));
                    assert_eq!(code, "AccessDenied");
                }
                other => panic!("{op}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_bucket_on_a_bodiless_head() {
        let not_found = |op, key| {
            let reply = ErrorReply {
                status: 404,
                code: None,
                message: String::new(),
                request_id: None,
            };
            error_for(op, "b", key, reply)
        };
        assert!(matches!(
            not_found(Operation::HeadBucket, ""),
            StorageError::NoSuchBucket { .. }
        ));
        assert!(matches!(
            not_found(Operation::HeadObject, "k"),
            StorageError::NotFound { code: None, .. }
        ));
    }
}
