//! What each S3 request is: its operation, the HTTP method it uses and the IAM action it needs.
//!
//! Every [`super::S3Request`] is built with its [`Operation`], so nothing has to guess what a
//! request was from its method and query string: an access-denied error names the IAM action
//! the policy must allow ([`Operation::iam_action`]), log lines and metrics name the operation,
//! and a request added later cannot be misnamed silently (the compiler asks for its arm here).
//! [`super::store::ObjectStore`] has one method per operation.

/// HTTP method of an S3 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// PUT
    Put,
    /// POST
    Post,
    /// DELETE
    Delete,
}

impl Method {
    /// The method as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One kind of S3 request, named as in the S3 API reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// HEAD an object.
    HeadObject,
    /// GET an object (or a range of it).
    GetObject,
    /// PUT an object.
    PutObject,
    /// Server-side copy of one object (PUT with `x-amz-copy-source`).
    CopyObject,
    /// DELETE one object.
    DeleteObject,
    /// An object's tag set (GET `?tagging`).
    GetObjectTagging,
    /// Delete many keys in one request (POST `?delete`).
    DeleteObjects,
    /// One page of a bucket listing (GET `?list-type=2`).
    ListObjectsV2,
    /// Start a multipart upload (POST `?uploads`).
    CreateMultipartUpload,
    /// Send one part (PUT `?partNumber&uploadId`).
    UploadPart,
    /// Copy a byte range of another object into one part.
    UploadPartCopy,
    /// Assemble the parts into the object (POST `?uploadId`).
    CompleteMultipartUpload,
    /// Drop an upload and its parts (DELETE `?uploadId`).
    AbortMultipartUpload,
    /// The parts of one upload (GET `?uploadId`).
    ListParts,
    /// The uploads in progress in a bucket (GET `?uploads`).
    ListMultipartUploads,
    /// Does the bucket exist and may we use it?
    HeadBucket,
    /// Create a bucket.
    CreateBucket,
    /// Delete an empty bucket.
    DeleteBucket,
}

impl Operation {
    /// Every operation, for tables and tests.
    pub const ALL: [Operation; 18] = [
        Operation::HeadObject,
        Operation::GetObject,
        Operation::PutObject,
        Operation::CopyObject,
        Operation::DeleteObject,
        Operation::GetObjectTagging,
        Operation::DeleteObjects,
        Operation::ListObjectsV2,
        Operation::CreateMultipartUpload,
        Operation::UploadPart,
        Operation::UploadPartCopy,
        Operation::CompleteMultipartUpload,
        Operation::AbortMultipartUpload,
        Operation::ListParts,
        Operation::ListMultipartUploads,
        Operation::HeadBucket,
        Operation::CreateBucket,
        Operation::DeleteBucket,
    ];

    /// The operation's name in the S3 API reference, e.g. `ListObjectsV2`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::HeadObject => "HeadObject",
            Operation::GetObject => "GetObject",
            Operation::PutObject => "PutObject",
            Operation::CopyObject => "CopyObject",
            Operation::DeleteObject => "DeleteObject",
            Operation::GetObjectTagging => "GetObjectTagging",
            Operation::DeleteObjects => "DeleteObjects",
            Operation::ListObjectsV2 => "ListObjectsV2",
            Operation::CreateMultipartUpload => "CreateMultipartUpload",
            Operation::UploadPart => "UploadPart",
            Operation::UploadPartCopy => "UploadPartCopy",
            Operation::CompleteMultipartUpload => "CompleteMultipartUpload",
            Operation::AbortMultipartUpload => "AbortMultipartUpload",
            Operation::ListParts => "ListParts",
            Operation::ListMultipartUploads => "ListMultipartUploads",
            Operation::HeadBucket => "HeadBucket",
            Operation::CreateBucket => "CreateBucket",
            Operation::DeleteBucket => "DeleteBucket",
        }
    }

    /// The HTTP method the operation is sent with.
    pub fn method(self) -> Method {
        match self {
            Operation::HeadObject | Operation::HeadBucket => Method::Head,
            Operation::GetObject
            | Operation::GetObjectTagging
            | Operation::ListObjectsV2
            | Operation::ListParts
            | Operation::ListMultipartUploads => Method::Get,
            Operation::PutObject
            | Operation::CopyObject
            | Operation::UploadPart
            | Operation::UploadPartCopy
            | Operation::CreateBucket => Method::Put,
            Operation::DeleteObjects
            | Operation::CreateMultipartUpload
            | Operation::CompleteMultipartUpload => Method::Post,
            Operation::DeleteObject | Operation::AbortMultipartUpload | Operation::DeleteBucket => {
                Method::Delete
            }
        }
    }

    /// The IAM action a policy must allow for this operation (named in access-denied errors).
    /// Multipart steps need `s3:PutObject`, as AWS documents; copies read the source too.
    pub fn iam_action(self) -> &'static str {
        match self {
            Operation::HeadObject | Operation::GetObject => "s3:GetObject",
            Operation::PutObject
            | Operation::CreateMultipartUpload
            | Operation::UploadPart
            | Operation::CompleteMultipartUpload => "s3:PutObject",
            Operation::CopyObject | Operation::UploadPartCopy => {
                "s3:GetObject on the source and s3:PutObject"
            }
            Operation::DeleteObject | Operation::DeleteObjects => "s3:DeleteObject",
            Operation::GetObjectTagging => "s3:GetObjectTagging",
            Operation::ListObjectsV2 | Operation::HeadBucket => "s3:ListBucket",
            Operation::AbortMultipartUpload => "s3:AbortMultipartUpload",
            Operation::ListParts => "s3:ListMultipartUploadParts",
            Operation::ListMultipartUploads => "s3:ListBucketMultipartUploads",
            Operation::CreateBucket => "s3:CreateBucket",
            Operation::DeleteBucket => "s3:DeleteBucket",
        }
    }

    /// True for operations on a bucket rather than on one object (sent without a key).
    pub fn is_bucket_level(self) -> bool {
        matches!(
            self,
            Operation::DeleteObjects
                | Operation::ListObjectsV2
                | Operation::ListMultipartUploads
                | Operation::HeadBucket
                | Operation::CreateBucket
                | Operation::DeleteBucket
        )
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_names_an_iam_action() {
        // `iam_action` matches without a wildcard, so a new operation does not compile until
        // it names its action; ALL lists the operations in declaration order, each once.
        let mut names = std::collections::BTreeSet::new();
        for (i, op) in Operation::ALL.into_iter().enumerate() {
            assert_eq!(op as usize, i, "{op} out of place in ALL");
            let action = op.iam_action();
            assert!(action.starts_with("s3:"), "{op}: {action}");
            assert!(names.insert(op.name()), "{op} listed twice");
            assert_eq!(op.to_string(), op.name());
        }
        assert_eq!(Operation::ListObjectsV2.iam_action(), "s3:ListBucket");
        assert_eq!(Operation::PutObject.iam_action(), "s3:PutObject");
        assert_eq!(
            Operation::ListParts.iam_action(),
            "s3:ListMultipartUploadParts"
        );
        assert_eq!(
            Operation::ListMultipartUploads.iam_action(),
            "s3:ListBucketMultipartUploads"
        );
    }

    #[test]
    fn methods_and_levels() {
        assert_eq!(Operation::HeadBucket.method(), Method::Head);
        assert_eq!(Operation::CompleteMultipartUpload.method(), Method::Post);
        assert_eq!(Operation::AbortMultipartUpload.method(), Method::Delete);
        assert_eq!(Operation::UploadPartCopy.method(), Method::Put);
        assert!(Operation::ListObjectsV2.is_bucket_level());
        assert!(!Operation::ListParts.is_bucket_level());
        for op in Operation::ALL {
            assert!(!op.method().as_str().is_empty());
        }
    }
}
