//! What the in-memory S3 holds and how requests on buckets and objects change it: S3's
//! semantics, with no switches and no client (multipart uploads: [`super::multipart`],
//! listings: [`super::listing`]). A refusal is the status, code and message S3 would answer; the
//! store turns it into the [`crate::s3::StorageError`] the client would.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::super::etag::md5_etag;
use super::super::meta::{
    other_class, Metadata, TagSet, KEPT_HEADERS, MAX_USER_METADATA_BYTES, STORAGE_CLASS_HEADER,
    TAGGING_HEADER, TAG_COUNT_HEADER,
};
use super::super::name::MAX_KEY_BYTES;
use super::super::store::MAX_SINGLE_COPY;
use super::super::types::{CopyResult, ObjectInfo};

/// S3's page size, and the most it returns whatever a request asks for.
pub(super) const MAX_PAGE: usize = 1000;
/// Mixed into the bytes for opaque ETags, so they are not the bytes' MD5.
const OPAQUE_SALT: &[u8] = b"opaque etag:";
/// What S3 stores as Content-Type when a write gives none.
pub(super) const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// An error reply S3 would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn no_such_key() -> Self {
        Refusal::new(404, "NoSuchKey", "The specified key does not exist.")
    }

    pub(super) fn no_such_upload() -> Self {
        Refusal::new(
            404,
            "NoSuchUpload",
            "The specified multipart upload does not exist.",
        )
    }

    pub(super) fn precondition() -> Self {
        Refusal::new(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        )
    }
}

/// What S3 answers: a value, or a refusal.
pub(super) type Answer<T> = Result<T, Refusal>;

/// One stored object, as a HEAD would describe it plus its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    /// The bytes.
    pub data: Vec<u8>,
    /// ETag, bare: the MD5 of the bytes, or the multipart form `md5-N`.
    pub etag: String,
    /// When it was written (whole seconds, as HTTP dates say).
    pub last_modified: SystemTime,
    /// User metadata as a HEAD returns it.
    pub metadata: Metadata,
    /// Content headers (lower-case names), Content-Type always among them.
    pub content_headers: Vec<(String, String)>,
    /// Its tags.
    pub tags: TagSet,
}

impl StoredObject {
    /// What a HEAD says about it: with the number of its tags, when it has some, as S3 says it.
    pub fn info(&self) -> ObjectInfo {
        let mut content_headers = self.content_headers.clone();
        if !self.tags.is_empty() {
            content_headers.push((TAG_COUNT_HEADER.into(), self.tags.0.len().to_string()));
        }
        ObjectInfo {
            size: self.data.len() as u64,
            etag: Some(self.etag.clone()),
            last_modified: Some(self.last_modified),
            metadata: self.metadata.clone(),
            content_headers,
        }
    }
}

/// One multipart upload in progress (its requests: [`super::multipart`]).
#[derive(Debug)]
pub(super) struct Upload {
    /// The key it makes.
    pub(super) key: String,
    /// Creation order, which ListMultipartUploads follows within one key.
    pub(super) seq: u64,
    pub(super) initiated: SystemTime,
    pub(super) metadata: Metadata,
    pub(super) content_headers: Vec<(String, String)>,
    pub(super) tags: TagSet,
    /// Number → (bytes, ETag).
    pub(super) parts: BTreeMap<u32, (Vec<u8>, String)>,
}

#[derive(Debug, Default)]
pub(super) struct BucketState {
    pub(super) objects: BTreeMap<String, StoredObject>,
    pub(super) uploads: BTreeMap<String, Upload>,
}

/// What a write stores besides the bytes, already as S3 would keep it.
#[derive(Debug, Clone)]
pub(super) struct Attributes {
    pub metadata: Metadata,
    pub content_headers: Vec<(String, String)>,
    /// The tags the request named (`x-amz-tagging`); `None`: it named none — a PUT's object
    /// has no tags then, a copy's has the source's.
    pub tags: Option<TagSet>,
}

impl Attributes {
    /// S3's reading of what a write sent: header values trimmed (HTTP does not keep the
    /// spaces around them), metadata through its header encoding and back, only the content
    /// headers a HEAD returns, Content-Type defaulted; too much metadata refused.
    pub fn stored(metadata: &[(String, String)], content: &[(String, String)]) -> Answer<Self> {
        let metadata = Metadata::from_headers(metadata.iter().map(|(n, v)| (n.as_str(), v.trim())));
        if metadata.encoded_size() > MAX_USER_METADATA_BYTES {
            return Err(Refusal::new(
                400,
                "MetadataTooLarge",
                "Your metadata headers exceed the maximum allowed metadata size.",
            ));
        }
        let mut content_headers: Vec<(String, String)> = content
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
            .filter(|(n, _)| KEPT_HEADERS.contains(&n.as_str()))
            // S3 names no class for STANDARD in a HEAD.
            .filter(|(n, v)| n != STORAGE_CLASS_HEADER || other_class(v).is_some())
            .collect();
        if !content_headers.iter().any(|(n, _)| n == "content-type") {
            content_headers.push(("content-type".into(), DEFAULT_CONTENT_TYPE.into()));
        }
        let tags = match content.iter().find(|(n, _)| n.eq_ignore_ascii_case(TAGGING_HEADER)) {
            None => None,
            Some((_, v)) => Some(TagSet::from_header(v.trim()).ok_or_else(|| {
                Refusal::new(400, "InvalidArgument", "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates.")
            })?),
        };
        Ok(Attributes {
            metadata,
            content_headers,
            tags,
        })
    }
}

/// A write's condition (`If-None-Match: *`, `If-Match`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Condition<'a> {
    pub if_none_match_any: bool,
    pub if_match: Option<&'a str>,
}

/// The whole store: buckets of objects and uploads.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) buckets: BTreeMap<String, BucketState>,
    pub(super) next_upload: u64,
    /// ETags that are not MD5s of the bytes (see [`State::etag_of`]).
    pub(super) opaque_etags: bool,
    /// Keys over S3's 1024 bytes kept, as moto and Garage keep them.
    pub(super) long_keys: bool,
    /// Continuation tokens ignored: every page of a listing is its first.
    pub(super) stuck_listings: bool,
}

impl State {
    /// The ETag S3 gives `data` written in one request (a PUT, a part, a copy): its MD5, or,
    /// with opaque ETags (as AWS with SSE-KMS or SSE-C), 32 hex digits that are not its MD5.
    pub fn etag_of(&self, data: &[u8]) -> String {
        if self.opaque_etags {
            md5_etag(&[OPAQUE_SALT, data].concat())
        } else {
            md5_etag(data)
        }
    }

    pub(super) fn bucket(&self, bucket: &str) -> Answer<&BucketState> {
        self.buckets.get(bucket).ok_or_else(no_such_bucket)
    }

    pub(super) fn bucket_mut(&mut self, bucket: &str) -> Answer<&mut BucketState> {
        self.buckets.get_mut(bucket).ok_or_else(no_such_bucket)
    }

    pub(super) fn object(&self, bucket: &str, key: &str) -> Answer<&StoredObject> {
        self.bucket(bucket)?
            .objects
            .get(key)
            .ok_or_else(Refusal::no_such_key)
    }

    pub(super) fn upload_mut(&mut self, bucket: &str, key: &str, id: &str) -> Answer<&mut Upload> {
        match self.bucket_mut(bucket)?.uploads.get_mut(id) {
            Some(u) if u.key == key => Ok(u),
            _ => Err(Refusal::no_such_upload()),
        }
    }

    // ---- buckets --------------------------------------------------------------------------

    pub fn head_bucket(&self, bucket: &str) -> Answer<()> {
        self.bucket(bucket).map(|_| ())
    }

    pub fn create_bucket(&mut self, bucket: &str) -> Answer<()> {
        if self.buckets.contains_key(bucket) {
            return Err(Refusal::new(
                409,
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already own it.",
            ));
        }
        self.buckets
            .insert(bucket.to_string(), BucketState::default());
        Ok(())
    }

    pub fn delete_bucket(&mut self, bucket: &str) -> Answer<()> {
        if !self.bucket(bucket)?.objects.is_empty() {
            return Err(Refusal::new(
                409,
                "BucketNotEmpty",
                "The bucket you tried to delete is not empty",
            ));
        }
        self.buckets.remove(bucket);
        Ok(())
    }

    // ---- objects --------------------------------------------------------------------------

    pub fn head(&self, bucket: &str, key: &str) -> Answer<ObjectInfo> {
        self.check_key_len(key)?;
        self.object(bucket, key).map(StoredObject::info)
    }

    /// GET: the object and the bytes of `range`, clipped at its end.
    pub fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Answer<(ObjectInfo, Vec<u8>)> {
        self.check_key_len(key)?;
        let obj = self.object(bucket, key)?;
        check_etag(&obj.etag, if_match)?;
        let size = obj.data.len() as u64;
        let (start, end) = match range {
            None => (0, size),
            Some((start, _)) if start >= size => {
                return Err(Refusal::new(
                    416,
                    "InvalidRange",
                    "The requested range is not satisfiable",
                ))
            }
            Some((start, end)) => (start, end.min(size)),
        };
        // In range: start < size and end ≤ size, both within `data`.
        let bytes = obj.data[start as usize..end as usize].to_vec();
        Ok((obj.info(), bytes))
    }

    /// PUT (also CompleteMultipartUpload's final step): store `data` under `cond`.
    pub fn put(
        &mut self,
        (bucket, key): (&str, &str),
        data: Vec<u8>,
        etag: String,
        attrs: Attributes,
        cond: Condition<'_>,
        now: SystemTime,
    ) -> Answer<String> {
        self.check_key(key)?;
        let b = self.bucket_mut(bucket)?;
        match (b.objects.get(key), cond.if_match) {
            (Some(_), _) if cond.if_none_match_any => return Err(Refusal::precondition()),
            (None, Some(_)) => return Err(Refusal::no_such_key()),
            (Some(old), Some(want)) => check_etag(&old.etag, Some(want))?,
            _ => {}
        }
        b.objects.insert(
            key.to_string(),
            StoredObject {
                data,
                etag: etag.clone(),
                last_modified: now,
                metadata: attrs.metadata,
                content_headers: attrs.content_headers,
                tags: attrs.tags.unwrap_or_default(),
            },
        );
        Ok(etag)
    }

    /// CopyObject: `replace` = REPLACE with these attributes, `None` = COPY. As S3, a copy
    /// takes the storage class and encryption the request names, not the source's: with COPY
    /// they come from `class` (the request's `x-amz-storage-class`). It takes the source's
    /// tags unless the request names its own (`x-amz-tagging-directive: REPLACE`).
    pub fn copy(
        &mut self,
        (src_bucket, src_key): (&str, &str),
        (dst_bucket, dst_key): (&str, &str),
        replace: Option<Attributes>,
        (if_match, class): (Option<&str>, Option<&str>),
        now: SystemTime,
    ) -> Answer<CopyResult> {
        self.bucket(dst_bucket)?;
        let src = self.object(src_bucket, src_key)?;
        check_etag(&src.etag, if_match)?;
        if src.data.len() as u64 > MAX_SINGLE_COPY {
            return Err(Refusal::new(
                400,
                "InvalidRequest",
                format!("The specified copy source is larger than the maximum allowable size for a copy source: {MAX_SINGLE_COPY}"),
            ));
        }
        if (src_bucket, src_key) == (dst_bucket, dst_key) && replace.is_none() {
            return Err(Refusal::new(
                400,
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
            ));
        }
        let mut attrs = replace.unwrap_or_else(|| Attributes {
            tags: None,
            metadata: src.metadata.clone(),
            content_headers: src
                .content_headers
                .iter()
                .filter(|(n, _)| !n.starts_with("x-amz-"))
                .cloned()
                .chain(class.map(|c| (STORAGE_CLASS_HEADER.to_string(), c.to_string())))
                .collect(),
        });
        attrs.tags = attrs.tags.or_else(|| Some(src.tags.clone()));
        let data = src.data.clone();
        // A copy is one new object: the MD5 of its bytes, even from a multipart source.
        let etag = self.etag_of(&data);
        let etag = self.put(
            (dst_bucket, dst_key),
            data,
            etag,
            attrs,
            Condition::default(),
            now,
        )?;
        Ok(CopyResult {
            etag: Some(etag),
            last_modified: Some(now),
        })
    }

    pub fn delete(&mut self, bucket: &str, key: &str) -> Answer<()> {
        self.bucket_mut(bucket)?.objects.remove(key);
        Ok(())
    }

    // ---- behind the mount -----------------------------------------------------------------

    pub fn ensure_bucket(&mut self, bucket: &str) {
        self.buckets.entry(bucket.to_string()).or_default();
    }

    pub fn stored(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        self.buckets.get(bucket)?.objects.get(key).cloned()
    }

    pub fn remove(&mut self, bucket: &str, key: &str) -> bool {
        self.buckets
            .get_mut(bucket)
            .is_some_and(|b| b.objects.remove(key).is_some())
    }

    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.buckets
            .get(bucket)
            .map(|b| b.objects.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn upload_ids(&self, bucket: &str) -> Vec<(String, String)> {
        self.buckets
            .get(bucket)
            .map(|b| {
                b.uploads
                    .iter()
                    .map(|(id, u)| (u.key.clone(), id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub(super) fn no_such_bucket() -> Refusal {
    Refusal::new(404, "NoSuchBucket", "The specified bucket does not exist")
}

impl State {
    /// A key a write may make: not empty, and within S3's limit.
    pub(super) fn check_key(&self, key: &str) -> Answer<()> {
        if key.is_empty() {
            return Err(Refusal::new(
                400,
                "InvalidArgument",
                "An object needs a key",
            ));
        }
        self.check_key_len(key)
    }

    /// S3 refuses a key over its limit on every request, reads too (a HEAD's 400 has no
    /// body); a store keeping long keys takes any.
    pub(super) fn check_key_len(&self, key: &str) -> Answer<()> {
        if key.len() > MAX_KEY_BYTES && !self.long_keys {
            return Err(Refusal::new(400, "KeyTooLongError", "Your key is too long"));
        }
        Ok(())
    }
}

/// An `If-Match` (or `x-amz-copy-source-if-match`) against the stored ETag.
pub(super) fn check_etag(stored: &str, want: Option<&str>) -> Answer<()> {
    match want {
        Some(w) if super::super::xml::normalize_etag(w) != stored => Err(Refusal::precondition()),
        _ => Ok(()),
    }
}
