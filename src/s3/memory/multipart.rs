//! Multipart uploads in the in-memory S3: their parts, their completion with S3's checks,
//! and their listings.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::super::etag::multipart_etag;
use super::super::store::{MAX_PARTS, MIN_PART_SIZE};
use super::super::types::{
    CopyResult, ListedPart, ListedUpload, PartsPage, UploadsPage, UploadsRequest,
};
use super::state::{check_etag, Answer, Attributes, Condition, Refusal, State, Upload, MAX_PAGE};

impl State {
    pub fn create_upload(
        &mut self,
        bucket: &str,
        key: &str,
        attrs: Attributes,
        now: SystemTime,
    ) -> Answer<String> {
        self.check_key(key)?;
        self.next_upload += 1;
        let seq = self.next_upload;
        let b = self.bucket_mut(bucket)?;
        let id = format!("memory-upload-{seq}");
        b.uploads.insert(
            id.clone(),
            Upload {
                key: key.to_string(),
                seq,
                initiated: now,
                metadata: attrs.metadata,
                content_headers: attrs.content_headers,
                tags: attrs.tags.unwrap_or_default(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    pub fn upload_part(
        &mut self,
        bucket: &str,
        key: &str,
        id: &str,
        number: u32,
        data: Vec<u8>,
    ) -> Answer<String> {
        if number == 0 || u64::from(number) > MAX_PARTS {
            return Err(Refusal::new(
                400,
                "InvalidArgument",
                format!("Part number must be an integer between 1 and {MAX_PARTS}, inclusive"),
            ));
        }
        let etag = self.etag_of(&data);
        let upload = self.upload_mut(bucket, key, id)?;
        upload.parts.insert(number, (data, etag.clone()));
        Ok(etag)
    }

    /// UploadPartCopy: bytes `[start, end)` of the source as part `number`.
    pub fn upload_part_copy(
        &mut self,
        (bucket, key, id, number): (&str, &str, &str, u32),
        (src_bucket, src_key): (&str, &str),
        (start, end): (u64, u64),
        if_match: Option<&str>,
    ) -> Answer<String> {
        let src = self.object(src_bucket, src_key)?;
        check_etag(&src.etag, if_match)?;
        let size = src.data.len() as u64;
        if start >= end || end > size {
            return Err(Refusal::new(
                400,
                "InvalidArgument",
                format!("Range specified is not valid for source object of size: {size}"),
            ));
        }
        // In range: start < end ≤ size.
        let data = src.data[start as usize..end as usize].to_vec();
        self.upload_part(bucket, key, id, number, data)
    }

    /// CompleteMultipartUpload: assemble `parts` into the object under `cond`. On a refusal
    /// the upload stays open, as on S3.
    pub fn complete(
        &mut self,
        (bucket, key, id): (&str, &str, &str),
        parts: &[(u32, String)],
        cond: Condition<'_>,
        now: SystemTime,
    ) -> Answer<CopyResult> {
        let upload = self.upload_mut(bucket, key, id)?;
        if parts.is_empty() {
            return Err(Refusal::new(
                400,
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our published schema",
            ));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(Refusal::new(
                400,
                "InvalidPartOrder",
                "The list of parts was not in ascending order.",
            ));
        }
        let mut data = Vec::new();
        let mut etags = Vec::with_capacity(parts.len());
        for (i, (number, etag)) in parts.iter().enumerate() {
            let Some((bytes, stored)) = upload.parts.get(number) else {
                return Err(invalid_part());
            };
            if super::super::xml::normalize_etag(etag) != *stored {
                return Err(invalid_part());
            }
            if i + 1 < parts.len() && (bytes.len() as u64) < MIN_PART_SIZE {
                return Err(Refusal::new(
                    400,
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed object size.",
                ));
            }
            data.extend_from_slice(bytes);
            etags.push(stored.clone());
        }
        let attrs = Attributes {
            metadata: upload.metadata.clone(),
            content_headers: upload.content_headers.clone(),
            tags: Some(upload.tags.clone()),
        };
        let etag = if self.opaque_etags {
            format!("{}-{}", self.etag_of(&data), etags.len())
        } else {
            multipart_etag(etags.iter().map(String::as_str)).unwrap_or_default()
        };
        let etag = self.put((bucket, key), data, etag, attrs, cond, now)?;
        self.bucket_mut(bucket)?.uploads.remove(id);
        // The reply names the ETag, not a date.
        Ok(CopyResult {
            etag: Some(etag),
            last_modified: None,
        })
    }

    pub fn abort(&mut self, bucket: &str, key: &str, id: &str) -> Answer<()> {
        self.upload_mut(bucket, key, id)?;
        self.bucket_mut(bucket)?.uploads.remove(id);
        Ok(())
    }

    pub fn list_parts(
        &mut self,
        (bucket, key, id): (&str, &str, &str),
        marker: Option<u32>,
        max_parts: Option<u32>,
    ) -> Answer<PartsPage> {
        let upload = self.upload_mut(bucket, key, id)?;
        let max = max_parts.map_or(MAX_PAGE, |m| (m as usize).min(MAX_PAGE));
        let mut page = PartsPage::default();
        for (number, (bytes, etag)) in upload.parts.range(marker.map_or(0, |m| m + 1)..) {
            if page.parts.len() == max {
                page.is_truncated = true;
                page.next_part_number_marker = page.parts.last().map(|p| p.part_number);
                break;
            }
            page.parts.push(ListedPart {
                part_number: *number,
                size: bytes.len() as u64,
                etag: Some(etag.clone()),
            });
        }
        Ok(page)
    }

    pub fn list_uploads(&self, bucket: &str, req: &UploadsRequest) -> Answer<UploadsPage> {
        let b = self.bucket(bucket)?;
        let mut uploads: Vec<(&String, &Upload)> = b
            .uploads
            .iter()
            .filter(|(_, u)| u.key.starts_with(&req.prefix))
            .collect();
        uploads.sort_by(|a, b| (&a.1.key, a.1.seq).cmp(&(&b.1.key, b.1.seq)));
        let after = |(id, u): &(&String, &Upload)| match (&req.key_marker, &req.upload_id_marker) {
            (None, _) => true,
            (Some(k), None) => u.key > *k,
            (Some(k), Some(marker)) => {
                u.key > *k
                    || (u.key == *k
                        && b.uploads
                            .get(marker)
                            .is_none_or(|m| u.seq > m.seq && id.as_str() != marker))
            }
        };
        let mut page = UploadsPage::default();
        for entry in uploads.iter().filter(|e| after(e)) {
            if page.uploads.len() == MAX_PAGE {
                page.is_truncated = true;
                break;
            }
            page.uploads.push(ListedUpload {
                key: entry.1.key.clone(),
                upload_id: entry.0.clone(),
                initiated: Some(entry.1.initiated),
            });
        }
        if page.is_truncated {
            page.next_key_marker = page.uploads.last().map(|u| u.key.clone());
            page.next_upload_id_marker = page.uploads.last().map(|u| u.upload_id.clone());
        }
        Ok(page)
    }
}

fn invalid_part() -> Refusal {
    Refusal::new(
        400,
        "InvalidPart",
        "One or more of the specified parts could not be found.",
    )
}
