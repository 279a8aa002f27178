//! The error of every file system operation: an errno for the kernel plus a message for the log.

use crate::s3::StorageError;

/// An errno plus a message for the log.
#[derive(Debug)]
pub struct FsError {
    /// The errno answered to the kernel.
    pub errno: i32,
    /// What happened (logged; never shown to the caller, who only sees the errno).
    pub message: String,
}

impl FsError {
    /// An error with this errno and message.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        FsError {
            errno,
            message: message.into(),
        }
    }

    /// ENOENT.
    pub fn not_found(what: impl Into<String>) -> Self {
        FsError::new(libc::ENOENT, what)
    }
}

impl From<StorageError> for FsError {
    fn from(e: StorageError) -> Self {
        FsError::new(e.errno(), e.to_string())
    }
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (errno {})", self.message, self.errno)
    }
}

/// Result of a file system operation.
pub type FsResult<T> = Result<T, FsError>;
