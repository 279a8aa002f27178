//! The [`ObjectStore`] methods of [`MemoryStore`]: each request checked as the client checks
//! it before sending, then served through the store's switches and state.

use std::io::Read;
use std::sync::Arc;

use super::super::body::RequestBody;
use super::super::error::{Result, StorageError};
use super::super::meta::{Metadata, TagSet};
use super::super::name::ObjectRef;
use super::super::operation::Operation;
use super::super::requests::delete::request_body as delete_request_body;
use super::super::store::ObjectStore;
use super::super::types::{
    CopyRequest, CopyResult, DeleteResult, GetObject, ListPage, ListRequest, ObjectInfo, PartsPage,
    PutOptions, UploadsPage, UploadsRequest,
};
use super::state::Attributes;
use super::{Capability, MemoryStore};

/// The header form of `metadata`, refused as the client refuses it before sending.
fn metadata_headers(metadata: &Metadata) -> Result<Vec<(String, String)>> {
    metadata.to_headers()
}

/// A GET body that breaks after `left` bytes.
struct CutBody {
    inner: std::io::Cursor<Vec<u8>>,
    left: u64,
}

impl Read for CutBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset in the body (injected)",
            ));
        }
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got as u64;
        Ok(got)
    }
}

impl ObjectStore for MemoryStore {
    fn single_attempt(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.clone())
    }

    fn head_bucket(&self, bucket: &str) -> Result<()> {
        self.request(Operation::HeadBucket, (bucket, ""), |s, _| {
            s.head_bucket(bucket)
        })
    }

    fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.request(Operation::CreateBucket, (bucket, ""), |s, _| {
            s.create_bucket(bucket)
        })
    }

    fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.request(Operation::DeleteBucket, (bucket, ""), |s, _| {
            s.delete_bucket(bucket)
        })
    }

    fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        self.request(Operation::HeadObject, (&obj.bucket, &obj.key), |s, _| {
            s.head(&obj.bucket, &obj.key)
        })
    }

    fn get_object(
        &self,
        obj: &ObjectRef,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<GetObject> {
        if let Some((start, end)) = range {
            if end <= start {
                return Err(StorageError::invalid("range", format!("{start}..{end}")));
            }
        }
        let (info, bytes) =
            self.request(Operation::GetObject, (&obj.bucket, &obj.key), |s, _| {
                let if_match = self.match_condition(Capability::GetIfMatch, if_match)?;
                s.get(&obj.bucket, &obj.key, range, if_match)
            })?;
        let content_length = bytes.len() as u64;
        let inner = std::io::Cursor::new(bytes);
        let body: Box<dyn Read + Send> = match self.cut_body() {
            Some(left) => Box::new(CutBody { inner, left }),
            None => Box::new(inner),
        };
        Ok(GetObject {
            etag: info.etag.clone(),
            content_length,
            total_size: info.size,
            body,
            info,
        })
    }

    fn put_object(
        &self,
        obj: &ObjectRef,
        body: RequestBody<'_>,
        opts: &PutOptions,
    ) -> Result<Option<String>> {
        let headers = metadata_headers(&opts.metadata)?;
        let data = body
            .to_vec()
            .map_err(|e| StorageError::io(format!("PUT {obj}: reading body"), e))?;
        self.request(Operation::PutObject, (&obj.bucket, &obj.key), |s, now| {
            let etag = s.etag_of(&data);
            let attrs = Attributes::stored(&headers, &opts.content_headers)?;
            let cond = self.condition(opts.if_none_match_any, opts.if_match.as_deref())?;
            s.put((&obj.bucket, &obj.key), data, etag, attrs, cond, now)
                .map(Some)
        })
    }

    fn copy_object(&self, c: &CopyRequest) -> Result<CopyResult> {
        let replace = match &c.replace {
            Some(r) => Some((metadata_headers(&r.metadata)?, &r.content_headers)),
            None => None,
        };
        self.request(
            Operation::CopyObject,
            (&c.dst.bucket, &c.dst.key),
            |s, now| {
                let replace = match replace {
                    Some((headers, content)) => Some(Attributes::stored(&headers, content)?),
                    None => None,
                };
                if c.replace.is_some() {
                    self.uses(Capability::MetadataReplace)?;
                }
                let if_match =
                    self.match_condition(Capability::CopySourceIfMatch, c.if_match.as_deref())?;
                s.copy(
                    (&c.src.bucket, &c.src.key),
                    (&c.dst.bucket, &c.dst.key),
                    replace,
                    (if_match, c.storage_class.as_deref()),
                    now,
                )
            },
        )
    }

    fn delete_object(&self, obj: &ObjectRef) -> Result<()> {
        self.request(Operation::DeleteObject, (&obj.bucket, &obj.key), |s, _| {
            s.delete(&obj.bucket, &obj.key)
        })
    }

    fn get_object_tagging(&self, obj: &ObjectRef) -> Result<TagSet> {
        self.request(
            Operation::GetObjectTagging,
            (&obj.bucket, &obj.key),
            |s, _| s.object(&obj.bucket, &obj.key).map(|o| o.tags.clone()),
        )
    }

    fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<DeleteResult> {
        delete_request_body(keys)?;
        self.request(Operation::DeleteObjects, (bucket, ""), |s, _| {
            self.uses(Capability::DeleteObjects)?;
            s.head_bucket(bucket)?;
            for key in keys {
                s.delete(bucket, key)?;
            }
            // Quiet mode: only the keys that could not be deleted are named.
            Ok(DeleteResult::default())
        })
    }

    fn list_objects_v2(&self, bucket: &str, list: &ListRequest) -> Result<ListPage> {
        self.request(Operation::ListObjectsV2, (bucket, ""), |s, _| {
            s.list(bucket, list)
        })
    }

    fn create_multipart_upload(&self, obj: &ObjectRef, opts: &PutOptions) -> Result<String> {
        let headers = metadata_headers(&opts.metadata)?;
        let at = (obj.bucket.as_str(), obj.key.as_str());
        self.request(Operation::CreateMultipartUpload, at, |s, now| {
            let attrs = Attributes::stored(&headers, &opts.content_headers)?;
            s.create_upload(&obj.bucket, &obj.key, attrs, now)
        })
    }

    fn upload_part(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        body: RequestBody<'_>,
    ) -> Result<String> {
        let data = body
            .to_vec()
            .map_err(|e| StorageError::io(format!("UploadPart {obj}: reading body"), e))?;
        self.request(Operation::UploadPart, (&obj.bucket, &obj.key), |s, _| {
            s.upload_part(&obj.bucket, &obj.key, upload_id, part_number, data)
        })
    }

    fn upload_part_copy(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        src: &ObjectRef,
        range: (u64, u64),
        if_match: Option<&str>,
    ) -> Result<String> {
        self.request(
            Operation::UploadPartCopy,
            (&obj.bucket, &obj.key),
            |s, _| {
                let if_match = self.match_condition(Capability::CopySourceIfMatch, if_match)?;
                s.upload_part_copy(
                    (&obj.bucket, &obj.key, upload_id, part_number),
                    (&src.bucket, &src.key),
                    range,
                    if_match,
                )
            },
        )
    }

    fn complete_multipart_upload(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        parts: &[(u32, String)],
        cond: &PutOptions,
    ) -> Result<CopyResult> {
        let at = (obj.bucket.as_str(), obj.key.as_str());
        self.request(Operation::CompleteMultipartUpload, at, |s, now| {
            let c = self.condition(cond.if_none_match_any, cond.if_match.as_deref())?;
            s.complete((&obj.bucket, &obj.key, upload_id), parts, c, now)
        })
    }

    fn abort_multipart_upload(&self, obj: &ObjectRef, upload_id: &str) -> Result<()> {
        let at = (obj.bucket.as_str(), obj.key.as_str());
        self.request(Operation::AbortMultipartUpload, at, |s, _| {
            s.abort(&obj.bucket, &obj.key, upload_id)
        })
    }

    fn list_parts(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        marker: Option<u32>,
        max_parts: Option<u32>,
    ) -> Result<PartsPage> {
        self.request(Operation::ListParts, (&obj.bucket, &obj.key), |s, _| {
            s.list_parts((&obj.bucket, &obj.key, upload_id), marker, max_parts)
        })
    }

    fn list_multipart_uploads(&self, bucket: &str, list: &UploadsRequest) -> Result<UploadsPage> {
        self.request(Operation::ListMultipartUploads, (bucket, ""), |s, _| {
            s.list_uploads(bucket, list)
        })
    }
}
