//! `S3Name`: an object's key and, optionally, its bucket — the seed's `S3Name(key, bucket)`.
//!
//! A name without a bucket means "the storage's default bucket"; [`crate::Storage`] resolves it
//! and answers [`StorageError::NoBucket`] (never a panic) when there is none.

use super::error::{Result, StorageError};

/// S3 refuses keys longer than this many bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// A remote object name: a key plus an optional bucket (default bucket when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Name {
    /// The object key.
    pub key: String,
    /// The bucket, or `None` for the storage's default bucket.
    pub bucket: Option<String>,
}

impl S3Name {
    /// A name in `bucket`, or in the default bucket when `bucket` is `None`.
    ///
    /// ```
    /// use s3mount::S3Name;
    /// let n = S3Name::new("example-in-s3", Some("my_other_bucket"));
    /// assert_eq!(n.bucket.as_deref(), Some("my_other_bucket"));
    /// let d = S3Name::new("example-in-s3", None);
    /// assert!(d.bucket.is_none());
    /// ```
    pub fn new(key: impl Into<String>, bucket: Option<&str>) -> Self {
        S3Name {
            key: key.into(),
            bucket: bucket.map(str::to_string),
        }
    }

    /// Resolve against a default bucket, validating the key.
    pub fn resolve(&self, default_bucket: Option<&str>) -> Result<ObjectRef> {
        validate_key(&self.key)?;
        let bucket = match (&self.bucket, default_bucket) {
            (Some(b), _) => b.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                return Err(StorageError::NoBucket {
                    key: self.key.clone(),
                })
            }
        };
        if bucket.is_empty() {
            return Err(StorageError::invalid("bucket", "empty bucket name"));
        }
        Ok(ObjectRef {
            bucket,
            key: self.key.clone(),
        })
    }
}

impl From<&str> for S3Name {
    fn from(key: &str) -> Self {
        S3Name::new(key, None)
    }
}

impl From<String> for S3Name {
    fn from(key: String) -> Self {
        S3Name { key, bucket: None }
    }
}

impl From<&S3Name> for S3Name {
    fn from(n: &S3Name) -> Self {
        n.clone()
    }
}

/// A fully resolved object location.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Keys must be non-empty and at most [`MAX_KEY_BYTES`] bytes.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StorageError::invalid("key", "empty key"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StorageError::invalid(
            "key",
            format!("{} bytes; S3 allows at most {MAX_KEY_BYTES}", key.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bucket_resolution() {
        let n = S3Name::from("k");
        assert_eq!(
            n.resolve(Some("d")).ok(),
            Some(ObjectRef {
                bucket: "d".into(),
                key: "k".into()
            })
        );
        assert!(matches!(
            n.resolve(None),
            Err(StorageError::NoBucket { .. })
        ));
        let n = S3Name::new("k", Some("other"));
        assert_eq!(
            n.resolve(Some("d")).map(|r| r.bucket).ok(),
            Some("other".into())
        );
        assert!(S3Name::from("").resolve(Some("d")).is_err());
        assert!(S3Name::from("x".repeat(1025)).resolve(Some("d")).is_err());
    }
}
