//! Requests on a bucket itself: HeadBucket, CreateBucket, DeleteBucket.

use super::super::body::RequestBody;
use super::super::client::{S3Client, S3Request};
use super::super::error::Result;
use super::super::operation::Operation;
use super::super::xml::S3_NS;

/// The region S3 creates a bucket in when the request names none.
const DEFAULT_REGION: &str = "us-east-1";

/// HeadBucket: `Ok` if the bucket exists and is reachable with these credentials.
pub(crate) fn head_bucket(client: &S3Client, bucket: &str) -> Result<()> {
    client
        .execute(&S3Request::new(Operation::HeadBucket, bucket, ""))
        .map(|_| ())
}

/// CreateBucket, in the client's region.
pub(crate) fn create_bucket(client: &S3Client, bucket: &str) -> Result<()> {
    let region = &client.config().region;
    let body = if region == DEFAULT_REGION {
        String::new()
    } else {
        format!(
            "<CreateBucketConfiguration xmlns=\"{S3_NS}\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        )
    };
    let req = S3Request::new(Operation::CreateBucket, bucket, "")
        .body(RequestBody::Bytes(body.as_bytes()));
    client.execute(&req).map(|_| ())
}

/// DeleteBucket (the bucket must be empty).
pub(crate) fn delete_bucket(client: &S3Client, bucket: &str) -> Result<()> {
    client
        .execute(&S3Request::new(Operation::DeleteBucket, bucket, ""))
        .map(|_| ())
}
