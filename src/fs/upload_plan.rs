//! What an upload of a file carries ([`UploadPlan`]), and the multipart upload streamed while
//! a file is written, with the key and plan it was created for ([`Streaming`]; the policy of
//! when to start, feed and give it up is in [`super::upload`] and [`super::open_file`]).

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::s3::stream::UploadQueue;
use crate::s3::{Metadata, PutOptions, StreamingUpload};

/// What an upload of a file carries.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadPlan {
    /// User metadata.
    pub metadata: Metadata,
    /// Content headers (at least a Content-Type).
    pub content_headers: Vec<(String, String)>,
    /// `If-None-Match: *` (created with `O_EXCL`).
    pub exclusive: bool,
}

impl UploadPlan {
    /// The request options of an upload carrying this.
    pub fn put_options(&self) -> PutOptions {
        PutOptions {
            metadata: self.metadata.clone(),
            content_headers: self.content_headers.clone(),
            if_none_match_any: self.exclusive,
            if_match: None,
        }
    }

    /// Would an upload with `other` store the same headers? The times are left out (the
    /// last write's, moved by every write), the `mtime` unless it was set explicitly.
    pub fn same_headers(&self, other: &UploadPlan, mtime_explicit: bool) -> bool {
        let strip = |m: &Metadata| {
            let mut m = m.clone();
            if !mtime_explicit {
                m.remove("mtime");
            }
            m.remove("ctime");
            m
        };
        self.content_headers == other.content_headers
            && strip(&self.metadata) == strip(&other.metadata)
    }
}

/// A multipart upload fed while the file is written, and what it was created for.
#[derive(Debug)]
pub struct Streaming {
    upload: StreamingUpload,
    key: String,
    plan: UploadPlan,
}

impl Streaming {
    /// `upload`, created for the object `key` with the headers of `plan`.
    pub fn new(upload: StreamingUpload, key: String, plan: UploadPlan) -> Self {
        Streaming { upload, key, plan }
    }

    /// The key it uploads to.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The headers it was created with.
    pub fn plan(&self) -> &UploadPlan {
        &self.plan
    }

    /// Bytes handed to the upload so far: they must stay as they are.
    pub fn shipped_end(&self) -> u64 {
        self.upload.shipped_end()
    }

    /// Send the parts complete up to `written` (in the background).
    pub fn ship_up_to(&mut self, written: u64) -> crate::s3::Result<()> {
        self.upload.ship_up_to(written)
    }

    /// The queue of parts in flight, for a writer to wait on.
    pub fn queue(&self) -> Arc<UploadQueue> {
        self.upload.queue()
    }

    /// Abort it in the background (the handle to join, if a thread was started).
    pub fn abort_in_background(self) -> Option<JoinHandle<()>> {
        self.upload.abort_in_background()
    }

    /// Send the tail, wait for the parts and complete the upload under `cond`; the new ETag.
    /// Gives back the plan it carried.
    pub fn finish(
        self,
        len: u64,
        cond: &PutOptions,
    ) -> (crate::s3::Result<Option<String>>, UploadPlan) {
        (self.upload.finish(len, cond), self.plan)
    }
}
