//! A multipart upload fed while the file is still being written.
//!
//! The file system writes into a local staging file; for a file written front to back it does
//! not wait for `close` to upload it. Once the file is larger than the multipart threshold it
//! starts a [`StreamingUpload`] and, each time the writer has filled another part, hands the
//! part's byte range to it ([`StreamingUpload::ship_up_to`]). Worker threads (at most
//! [`TransferConfig::parallelism`] parts in flight) read each part from the staging file with
//! `pread` and send it while the program goes on writing: no part is held in memory. At `close`
//! [`StreamingUpload::finish`] sends the rest (the tail becomes the last part), waits for every
//! part and completes the upload under the same conditions a single PUT would carry.
//!
//! Back-pressure: part ranges are queued, not copied, so the queue costs nothing; still, a
//! writer far ahead of the network only moves the wait to `close`, and the file system holds
//! the file's lock while it waits there. So a writer waits ([`UploadQueue::wait_for_room`],
//! called without the file's lock) while more than `2 × parallelism` parts are queued or in
//! flight; the rest of the file system is not blocked by it.
//!
//! Part layout: S3 allows 10 000 parts, and the final size is unknown while writing, so the
//! part size doubles every 1000 parts ([`PartLayout`]): 8 MiB parts cover the first 7.8 GiB,
//! and the 10 000 parts reach about 8 TB, beyond S3's 5 TiB object limit.
//!
//! Failure: a part that fails after the client's retries stops the workers; the caller sees the
//! error at its next `ship_up_to` or at `finish`, aborts the upload ([`StreamingUpload::abort`])
//! and falls back to uploading the whole staging file. A completion whose reply is lost is
//! different: it may have been applied, so it is looked into ([`super::reconcile`]), and when
//! that cannot tell, `finish` says so ([`StorageError::OutcomeUnknown`]) instead of inviting a
//! second upload. Every upload is recorded in the
//! bucket's journal before its first part (see [`super::journal`]), so a crash leaves nothing
//! that the next start does not abort.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::body::RequestBody;
use super::bucket::Bucket;
use super::error::{Result, StorageError};
use super::metrics::UploadTicket;
use super::name::ObjectRef;
use super::store::{MAX_PARTS, MIN_PART_SIZE};
use super::transfer::{MultipartUpload, TransferConfig};
use super::types::PutOptions;

/// Parts per size step of a [`PartLayout`]: the part size doubles after every this many parts.
const PARTS_PER_STEP: u64 = 1000;

/// Where each part of a streamed upload starts and ends, before the final size is known: parts
/// 1–1000 are `base` bytes, 1001–2000 `2 × base`, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartLayout {
    base: u64,
}

impl PartLayout {
    /// Parts of `base` bytes to start with (at least S3's 5 MiB minimum).
    pub fn new(base: u64) -> Self {
        PartLayout {
            base: base.max(MIN_PART_SIZE),
        }
    }

    /// Bytes `[start, end)` of part `n` (1-based) if the object is long enough; `None` past
    /// S3's part limit.
    pub fn range(&self, n: u32) -> Option<(u64, u64)> {
        let n = u64::from(n);
        if n == 0 || n > MAX_PARTS {
            return None;
        }
        let step = (n - 1) / PARTS_PER_STEP;
        let size = self.base.checked_shl(u32::try_from(step).ok()?)?;
        // Parts of the earlier steps: base × 1000 × (1 + 2 + … + 2^(step-1)).
        let before = self
            .base
            .checked_mul(PARTS_PER_STEP)?
            .checked_mul((1u64 << step) - 1)?;
        let start = before.checked_add(((n - 1) % PARTS_PER_STEP).checked_mul(size)?)?;
        Some((start, start.checked_add(size)?))
    }
}

/// Ranges waiting for a worker, and what the workers did.
#[derive(Debug, Default)]
struct QueueState {
    waiting: VecDeque<(u32, u64, u64)>,
    in_flight: usize,
    done: Vec<(u32, String)>,
    error: Option<StorageError>,
    /// No more parts will come: workers exit once the queue is empty.
    closing: bool,
    /// Stop: drop waiting parts, exit after the part in hand.
    cancelled: bool,
}

/// The queue of one streamed upload, shared with its workers. A writer holds a clone to wait
/// for room without holding its file's lock.
#[derive(Debug, Default)]
pub struct UploadQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
    /// Parts queued or in flight above which a writer waits.
    limit: usize,
}

impl UploadQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, QueueState>) -> MutexGuard<'a, QueueState> {
        self.changed.wait(g).unwrap_or_else(|p| p.into_inner())
    }

    /// Block while the upload has more than its limit of parts queued or in flight (returns at
    /// once when it failed or was stopped: the caller finds out at its next call).
    pub fn wait_for_room(&self) {
        let mut g = self.lock();
        while g.waiting.len() + g.in_flight > self.limit && g.error.is_none() && !g.cancelled {
            g = self.wait(g);
        }
    }

    fn cancel(&self) {
        self.lock().cancelled = true;
        self.changed.notify_all();
    }
}

/// A multipart upload whose parts are sent from a file while it is being written.
#[derive(Debug)]
pub struct StreamingUpload {
    bucket: Bucket,
    upload: Option<MultipartUpload>,
    queue: Arc<UploadQueue>,
    workers: Vec<JoinHandle<()>>,
    layout: PartLayout,
    /// The next part number to queue.
    next_part: u32,
    /// End of the bytes queued so far: `[0, shipped_end)` must not change any more.
    shipped_end: u64,
    /// What the upload was created with (metadata and content headers are fixed then).
    options: PutOptions,
    /// Its progress in the bucket's metrics (shared with the workers; gone with the last).
    progress: Option<Arc<UploadTicket>>,
}

impl StreamingUpload {
    /// `CreateMultipartUpload` for `key` with `options`' metadata and content headers
    /// (recorded in the bucket's journal), and start the workers that will read parts from
    /// `file`.
    pub fn start_in(bucket: &Bucket, key: &str, options: &PutOptions, file: File) -> Result<Self> {
        let transfer: &TransferConfig = bucket.transfer();
        let parallelism = transfer.parallelism.max(1);
        let upload = bucket.begin_multipart(key, options)?;
        let queue = Arc::new(UploadQueue {
            limit: 2 * parallelism,
            ..UploadQueue::default()
        });
        let file = Arc::new(file);
        let progress = bucket.upload_ticket(key, 0).map(Arc::new);
        let mut workers = Vec::with_capacity(parallelism);
        for i in 0..parallelism {
            let (b, q, f) = (bucket.clone(), queue.clone(), file.clone());
            let (obj, id) = (upload.obj.clone(), upload.upload_id.clone());
            let p = progress.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("s3mount-part-{i}"))
                .spawn(move || worker(&b, &obj, &id, &f, &q, p.as_deref()));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) if workers.is_empty() => {
                    let err = StorageError::io("starting upload workers", e);
                    return Err(abort_then(bucket, upload, err));
                }
                Err(_) => break, // fewer workers is fine
            }
        }
        Ok(StreamingUpload {
            bucket: bucket.clone(),
            upload: Some(upload),
            queue,
            workers,
            layout: PartLayout::new(transfer.part_size),
            next_part: 1,
            shipped_end: 0,
            options: options.clone(),
            progress,
        })
    }

    /// The object being uploaded.
    pub fn obj(&self) -> Option<&ObjectRef> {
        self.upload.as_ref().map(|u| &u.obj)
    }

    /// The upload id.
    pub fn upload_id(&self) -> Option<&str> {
        self.upload.as_ref().map(|u| u.upload_id.as_str())
    }

    /// The options the upload was created with.
    pub fn options(&self) -> &PutOptions {
        &self.options
    }

    /// End of the bytes handed to the upload: they must not change any more.
    pub fn shipped_end(&self) -> u64 {
        self.shipped_end
    }

    /// The queue, for [`UploadQueue::wait_for_room`].
    pub fn queue(&self) -> Arc<UploadQueue> {
        self.queue.clone()
    }

    /// Queue every whole part that lies below `end` (the bytes written so far, front to back).
    /// Never blocks. `Err` if a part already failed (the upload is then to be aborted).
    pub fn ship_up_to(&mut self, end: u64) -> Result<()> {
        self.check()?;
        if let Some(p) = &self.progress {
            p.set_total(end);
        }
        let mut queued = false;
        {
            let mut g = self.queue.lock();
            while let Some((start, part_end)) = self.layout.range(self.next_part) {
                if part_end > end {
                    break;
                }
                g.waiting.push_back((self.next_part, start, part_end));
                self.next_part += 1;
                self.shipped_end = part_end;
                queued = true;
            }
        }
        if queued {
            self.queue.changed.notify_all();
        }
        Ok(())
    }

    /// The first error a part met, if any (it is kept for [`StreamingUpload::finish`] too).
    fn check(&self) -> Result<()> {
        match &self.queue.lock().error {
            Some(e) => Err(StorageError::BadReply {
                what: format!("streamed upload of {}", self.describe()),
                detail: e.to_string(),
            }),
            None => Ok(()),
        }
    }

    fn describe(&self) -> String {
        self.upload
            .as_ref()
            .map(|u| u.obj.to_string())
            .unwrap_or_default()
    }

    /// Send the bytes from the shipped end to `len` (the whole file is `len` bytes), wait for
    /// every part and complete the upload with `cond`'s conditions (`If-None-Match` /
    /// `If-Match`); a completion whose reply is lost is looked into, not redone blindly (see
    /// [`super::reconcile`]). On failure the upload is aborted and the error returned: the
    /// caller may then upload the file another way — except after
    /// [`StorageError::OutcomeUnknown`], when the completion may have happened.
    pub fn finish(mut self, len: u64, cond: &PutOptions) -> Result<Option<String>> {
        let Some(upload) = self.upload.take() else {
            return Err(StorageError::invalid("upload", "already finished"));
        };
        if let Some(p) = &self.progress {
            p.set_total(len);
        }
        if len < self.shipped_end {
            let err = StorageError::invalid(
                "upload",
                format!(
                    "the file shrank below what was sent ({len} < {})",
                    self.shipped_end
                ),
            );
            self.stop_workers();
            return Err(abort_then(&self.bucket, upload, err));
        }
        {
            let mut g = self.queue.lock();
            while let Some((start, end)) = self.layout.range(self.next_part) {
                if start >= len {
                    break;
                }
                g.waiting.push_back((self.next_part, start, end.min(len)));
                self.next_part += 1;
                self.shipped_end = end.min(len);
            }
            g.closing = true;
        }
        self.queue.changed.notify_all();
        if self.shipped_end < len {
            // Past the last part S3 allows.
            self.stop_workers();
            let err = StorageError::invalid("upload", "file too large for a multipart upload");
            return Err(abort_then(&self.bucket, upload, err));
        }
        let waiting = std::time::Instant::now();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        log::debug!(
            "{}: {} parts sent; waited {:?} for the last ones",
            upload.obj,
            self.next_part.saturating_sub(1),
            waiting.elapsed()
        );
        let parts = {
            let mut g = self.queue.lock();
            match g.error.take() {
                Some(e) => Err(e),
                None => {
                    let mut done = std::mem::take(&mut g.done);
                    done.sort_by_key(|(n, _)| *n);
                    let expected = self.next_part.saturating_sub(1) as usize;
                    if done.len() == expected && expected > 0 {
                        Ok(done)
                    } else {
                        Err(StorageError::invalid(
                            "upload",
                            format!("{} of {expected} parts were sent", done.len()),
                        ))
                    }
                }
            }
        };
        // Completes under `cond`, or aborts; the journal entry goes either way once done.
        let completing = std::time::Instant::now();
        let obj = upload.obj.clone();
        let result = self.bucket.finish_multipart(upload, parts, len, cond);
        log::debug!(
            "{obj}: CompleteMultipartUpload took {:?}",
            completing.elapsed()
        );
        result
    }

    /// Stop sending parts, wait for the parts in flight (S3 may keep a part that finishes
    /// after the abort), then abort the upload and drop its journal entry.
    pub fn abort(mut self) -> Result<()> {
        self.stop_workers();
        match self.upload.take() {
            Some(u) => self.bucket.abort_upload(u),
            None => Ok(()),
        }
    }

    /// [`StreamingUpload::abort`] on a thread of its own; join the handle to know it is done.
    pub fn abort_in_background(self) -> Option<JoinHandle<()>> {
        let what = self.describe();
        let id = self.upload_id().unwrap_or_default().to_string();
        std::thread::Builder::new()
            .name("s3mount-abort".into())
            .spawn(move || {
                if let Err(e) = self.abort() {
                    log::warn!("{what}: could not abort streamed upload {id}: {e}");
                }
            })
            .ok()
    }

    fn stop_workers(&mut self) {
        self.queue.cancel();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for StreamingUpload {
    /// Neither finished nor aborted (a bug, or a panic elsewhere): stop the workers and abort
    /// in the background; should even that not happen, the journal has the upload.
    fn drop(&mut self) {
        if self.upload.is_none() {
            return;
        }
        self.queue.cancel();
        let workers = std::mem::take(&mut self.workers);
        let (bucket, upload) = (self.bucket.clone(), self.upload.take());
        let _ = std::thread::Builder::new()
            .name("s3mount-abort".into())
            .spawn(move || {
                for h in workers {
                    let _ = h.join();
                }
                if let Some(u) = upload {
                    let _ = bucket.abort_upload(u);
                }
            });
    }
}

/// Abort `upload` (logging a failure to) and return `err`.
fn abort_then(bucket: &Bucket, upload: MultipartUpload, err: StorageError) -> StorageError {
    let (obj, id) = (upload.obj.clone(), upload.upload_id.clone());
    if let Err(e) = bucket.abort_upload(upload) {
        log::warn!("{obj}: could not abort multipart upload {id}: {e}");
    }
    err
}

/// One worker: take a part range, send it, record its ETag (and its bytes in `progress`);
/// stop at the first error.
fn worker(
    bucket: &Bucket,
    obj: &ObjectRef,
    upload_id: &str,
    file: &File,
    queue: &UploadQueue,
    progress: Option<&UploadTicket>,
) {
    loop {
        let (n, start, end) = {
            let mut g = queue.lock();
            loop {
                if g.cancelled || g.error.is_some() {
                    return;
                }
                if let Some(p) = g.waiting.pop_front() {
                    g.in_flight += 1;
                    break p;
                }
                if g.closing {
                    return;
                }
                g = queue.wait(g);
            }
        };
        let result = bucket.upload_part(
            &obj.key,
            upload_id,
            n,
            RequestBody::File {
                file,
                offset: start,
                len: end - start,
            },
        );
        let mut g = queue.lock();
        g.in_flight -= 1;
        match result {
            Ok(etag) => {
                if let Some(p) = progress {
                    p.sent(end - start);
                }
                g.done.push((n, etag))
            }
            Err(e) => {
                log::warn!("{obj}: part {n} of streamed upload {upload_id} failed: {e}");
                g.error.get_or_insert(e);
            }
        }
        drop(g);
        queue.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn layout_is_contiguous_and_doubles_every_thousand_parts() {
        let l = PartLayout::new(8 * MIB);
        assert_eq!(l.range(0), None);
        assert_eq!(l.range(1), Some((0, 8 * MIB)));
        assert_eq!(l.range(2), Some((8 * MIB, 16 * MIB)));
        assert_eq!(l.range(1000), Some((999 * 8 * MIB, 1000 * 8 * MIB)));
        assert_eq!(l.range(1001), Some((8000 * MIB, 8016 * MIB)));
        let mut end = 0;
        for n in 1..=MAX_PARTS as u32 {
            let (s, e) = l.range(n).unwrap();
            assert_eq!(s, end, "part {n} starts where {} ended", n - 1);
            assert!(e - s >= MIN_PART_SIZE);
            end = e;
        }
        assert!(end > 5 * 1024 * 1024 * MIB, "10 000 parts reach past 5 TiB");
        assert_eq!(l.range(MAX_PARTS as u32 + 1), None);
        assert_eq!(PartLayout::new(1).range(1), Some((0, MIN_PART_SIZE)));
        // A huge base overflows into "no such part", not a panic.
        assert_eq!(PartLayout::new(u64::MAX / 2).range(1001), None);
    }
}
