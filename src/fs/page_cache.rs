//! What the kernel's page cache holds of each file: which object version its pages came from,
//! and filling it ahead of the reader.
//!
//! The kernel keeps a file's pages across `close` and `open`, but drops them at every `open`
//! unless the reply says `FOPEN_KEEP_CACHE`. Kept blindly, they could be of a version the
//! server no longer has; dropped always, every re-read goes through FUSE again. So each inode
//! remembers the ETag of the version its pages were filled from, and an `open` keeps them only
//! when it reads that same version — the ETag seen at open, revalidated by a HEAD once the
//! attributes are older than the metadata TTL (close-to-open consistency): a changed object
//! has a new ETag, and its first open drops the pages.
//!
//! Pages that may hold anything else than a version on the server — the file was written or
//! truncated through the mount, or opened while it had local changes — belong to no version
//! ([`KernelPages::changed`]): the next `open` drops them. So does the first `open` of an
//! inode, and of an object without an ETag. When the kernel forgets an inode, its pages go with
//! it ([`KernelPages::forget`]).
//!
//! **Filling the pages** ([`KernelPages::store`], `FUSE_NOTIFY_STORE` through the
//! [`PageSink`] the FUSE layer gives): when a random reader has an object fetched whole in the
//! background (`super::whole`), each part fetched is also handed to the kernel, so the
//! reader's later reads of it are page-cache hits with no FUSE round trip (for an object of
//! at most a quarter of the memory available: [`fits_in_memory`]). The kernel copies
//! such a store over whatever the pages hold, so a store is made only while it cannot put old
//! bytes over newer ones: the inode's pages are of the version stored (its open recorded that
//! ETag and nothing changed it since) and no handle of it is open for writing — a write
//! updates the kernel's pages before it reaches the mount, so writers are counted from their
//! `open` ([`KernelPages::add_writer`], which also waits for a store under way to end) to
//! their `release`. No lock is held while the kernel takes a store: it may wait for a page
//! that a read in flight holds, and that read for locks of the mount; for the same reason a
//! writer waits at most `WRITER_WAIT`, and a store that a writer did not wait for drops the
//! pages it stored.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};

/// True if `bytes` of one file may be put into the kernel's page cache: at most a quarter of
/// the memory the kernel says is available (`MemAvailable`), so filling it does not push
/// out what else is cached, nor is itself pushed out and put back over and over.
pub fn fits_in_memory(bytes: u64) -> bool {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return false;
    };
    let available_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    available_kib.is_some_and(|kib| bytes <= kib.saturating_mul(1024) / 4)
}

/// Where pages are put into the kernel's page cache of an inode (`FUSE_NOTIFY_STORE`).
pub trait PageSink: Send + Sync + std::fmt::Debug {
    /// Put `data` at `offset` of inode `ino`'s pages.
    fn store(&self, ino: u64, offset: u64, data: &[u8]) -> std::io::Result<()>;
    /// Drop `len` bytes of inode `ino`'s pages from `offset` on.
    fn invalidate(&self, ino: u64, offset: u64, len: u64) -> std::io::Result<()>;
}

/// How long a writer's `open` waits for a store under way before going on (the store then
/// drops what it stored, see [`KernelPages::store`]): a store waits for pages that reads in
/// flight hold, and if every FUSE thread were a writer waiting here, no thread would be left
/// to answer those reads.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Inode → ETag of the version the kernel's pages of it came from, and who may change them.
#[derive(Debug, Default)]
pub struct KernelPages {
    inner: Mutex<Inner>,
    /// Signalled when a store ends.
    stored: Condvar,
    sink: OnceLock<Arc<dyn PageSink>>,
}

#[derive(Debug, Default)]
struct Inner {
    by_ino: HashMap<u64, String>,
    /// Inode → handles open for writing.
    writers: HashMap<u64, usize>,
    /// Handles open for writing → their inode.
    writer_handles: HashMap<u64, u64>,
    /// Inode → stores under way.
    storing: HashMap<u64, usize>,
}

impl KernelPages {
    /// `ino` is opened to read version `etag` (`None`: no version on the server, or local
    /// content). True if the kernel may keep the pages it has (they are of that version); from
    /// now on its pages are of `etag`.
    pub fn open(&self, ino: u64, etag: Option<&str>) -> bool {
        let mut inner = self.inner.lock();
        match etag {
            Some(e) => match inner.by_ino.insert(ino, e.to_string()) {
                Some(had) => had == e,
                None => false,
            },
            None => {
                inner.by_ino.remove(&ino);
                false
            }
        }
    }

    /// The content of `ino` changed through the mount (or it has local changes): its pages are
    /// of no version on the server.
    pub fn changed(&self, ino: u64) {
        self.inner.lock().by_ino.remove(&ino);
    }

    /// The kernel forgot `ino`, and its pages with it.
    pub fn forget(&self, ino: u64) {
        self.inner.lock().by_ino.remove(&ino);
    }

    /// Handle `fh` of `ino` is open for writing: no store into `ino`'s pages until it is
    /// released. Returns once no store is under way, so call it before the kernel is told the
    /// handle (without holding a lock a read may need).
    pub fn add_writer(&self, ino: u64, fh: u64) {
        let mut inner = self.inner.lock();
        *inner.writers.entry(ino).or_insert(0) += 1;
        inner.writer_handles.insert(fh, ino);
        let deadline = std::time::Instant::now() + WRITER_WAIT;
        while inner.storing.contains_key(&ino) {
            if self.stored.wait_until(&mut inner, deadline).timed_out() {
                log::debug!("inode {ino}: opened for writing while its pages are being stored");
                break;
            }
        }
    }

    /// Handle `fh` is released (or was never handed out).
    pub fn release(&self, fh: u64) {
        let mut inner = self.inner.lock();
        if let Some(ino) = inner.writer_handles.remove(&fh) {
            if let Some(n) = inner.writers.get_mut(&ino) {
                *n -= 1;
                if *n == 0 {
                    inner.writers.remove(&ino);
                }
            }
        }
    }

    /// The FUSE layer's way into the kernel's page cache (once; later calls are ignored).
    pub fn set_sink(&self, sink: Arc<dyn PageSink>) {
        let _ = self.sink.set(sink);
    }

    /// Put `data`, bytes from `offset` of version `etag`, into the kernel's pages of `ino` —
    /// if they are of that version and no handle of it is open for writing (see the module
    /// documentation). True if stored.
    pub fn store(&self, ino: u64, etag: &str, offset: u64, data: &[u8]) -> bool {
        let Some(sink) = self.sink.get() else {
            return false;
        };
        {
            let mut inner = self.inner.lock();
            let current = inner.by_ino.get(&ino).is_some_and(|e| e == etag);
            if !current || inner.writers.contains_key(&ino) {
                return false;
            }
            *inner.storing.entry(ino).or_insert(0) += 1;
        }
        let result = sink.store(ino, offset, data);
        let overtaken = {
            let mut inner = self.inner.lock();
            if let Some(n) = inner.storing.get_mut(&ino) {
                *n -= 1;
                if *n == 0 {
                    inner.storing.remove(&ino);
                }
            }
            // A writer came (or came and went: its writes changed the version) meanwhile.
            inner.writers.contains_key(&ino) || inner.by_ino.get(&ino).is_none_or(|e| e != etag)
        };
        self.stored.notify_all();
        if overtaken {
            // A writer did not wait for this store to end: what it stored may lie over what
            // the writer wrote since. Dropped, those pages are read through the mount again.
            if let Err(e) = sink.invalidate(ino, offset, data.len() as u64) {
                log::debug!("inode {ino}: pages not dropped: {e}");
            }
            return false;
        }
        match result {
            Ok(()) => true,
            Err(e) => {
                log::debug!("inode {ino}: pages not stored in the kernel: {e}");
                false
            }
        }
    }

    /// How many inodes have pages of a known version (for tests and status).
    pub fn len(&self) -> usize {
        self.inner.lock().by_ino.len()
    }

    /// True if no inode has pages of a known version.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_kept_only_for_the_version_they_came_from() {
        let k = KernelPages::default();
        assert!(!k.open(1, Some("e1")), "first open: nothing to keep");
        assert!(k.open(1, Some("e1")), "same version: keep");
        assert!(!k.open(1, Some("e2")), "changed on the server: drop");
        assert!(k.open(1, Some("e2")));
        assert!(!k.open(2, Some("e2")), "another inode has its own pages");
        // Written through the mount: no version's pages any more.
        k.changed(1);
        assert!(!k.open(1, Some("e2")));
        assert!(k.open(1, Some("e2")));
        // Opened with local changes: dropped, and not kept by the open after it either.
        assert!(!k.open(1, None));
        assert!(!k.open(1, Some("e2")));
        // Forgotten by the kernel.
        k.forget(1);
        k.forget(2);
        assert!(k.is_empty());
        assert!(!k.open(1, Some("e2")));
    }

    /// A sink that records what it is given; one store may register a writer on the way (as
    /// an `open` for writing arriving while the kernel takes the store).
    #[derive(Default)]
    struct Recorder {
        stores: Mutex<Vec<(u64, u64, usize)>>,
        dropped: Mutex<Vec<(u64, u64, u64)>>,
        /// Run while the kernel "takes" the next store.
        during_store: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl std::fmt::Debug for Recorder {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Recorder")
        }
    }

    impl PageSink for Recorder {
        fn store(&self, ino: u64, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.stores.lock().push((ino, offset, data.len()));
            let during = self.during_store.lock().take();
            if let Some(f) = during {
                f();
            }
            Ok(())
        }
        fn invalidate(&self, ino: u64, offset: u64, len: u64) -> std::io::Result<()> {
            self.dropped.lock().push((ino, offset, len));
            Ok(())
        }
    }

    #[test]
    fn pages_are_stored_only_into_the_version_they_are_of_and_never_under_a_writer() {
        let k = Arc::new(KernelPages::default());
        assert!(!k.store(1, "e1", 0, b"x"), "no sink yet");
        let sink = Arc::new(Recorder::default());
        k.set_sink(sink.clone());
        assert!(!k.store(1, "e1", 0, b"x"), "never opened: no version");
        k.open(1, Some("e1"));
        assert!(!k.store(1, "e0", 0, b"x"), "another version");
        assert!(k.store(1, "e1", 4096, b"abc"));
        assert_eq!(*sink.stores.lock(), vec![(1, 4096, 3)]);
        // A handle open for writing: nothing until it is released.
        k.add_writer(1, 10);
        assert!(!k.store(1, "e1", 0, b"x"));
        k.release(10);
        assert!(k.store(1, "e1", 0, b"x"));
        k.release(11); // a handle that never wrote: nothing to undo
                       // Changed through the mount: the pages are of no version any more.
        k.changed(1);
        assert!(!k.store(1, "e1", 0, b"x"));
        assert_eq!(sink.stores.lock().len(), 2);
        assert!(sink.dropped.lock().is_empty());
    }

    #[test]
    fn only_what_fits_a_quarter_of_the_available_memory_goes_into_the_page_cache() {
        assert!(fits_in_memory(0));
        assert!(fits_in_memory(4096));
        assert!(!fits_in_memory(u64::MAX));
    }

    #[test]
    fn a_store_a_writer_did_not_wait_for_drops_what_it_stored() {
        let k = Arc::new(KernelPages::default());
        let sink = Arc::new(Recorder::default());
        k.set_sink(sink.clone());
        k.open(7, Some("e"));
        // A writer's open during the store: it waits WRITER_WAIT for this very store, then
        // goes on.
        let k2 = k.clone();
        *sink.during_store.lock() = Some(Box::new(move || k2.add_writer(7, 99)));
        let t = std::time::Instant::now();
        assert!(!k.store(7, "e", 8192, &[0u8; 100]), "overtaken by a writer");
        assert!(
            t.elapsed() >= WRITER_WAIT,
            "the writer waited for the store"
        );
        assert_eq!(*sink.dropped.lock(), vec![(7, 8192, 100)]);
        assert!(!k.store(7, "e", 0, b"x"), "the writer is still there");
        k.release(99);
        assert!(k.store(7, "e", 0, b"x"));
        // A writer that opened, wrote and closed, all during one store.
        let k3 = k.clone();
        *sink.during_store.lock() = Some(Box::new(move || {
            k3.add_writer(7, 100);
            k3.changed(7);
            k3.release(100);
        }));
        assert!(!k.store(7, "e", 4096, &[0u8; 10]), "overtaken by a write");
        assert_eq!(sink.dropped.lock().last(), Some(&(7, 4096, 10)));
    }
}
