//! Directory listings: `opendir`, `readdir`/`readdirplus`, `releasedir`.
//!
//! A directory is listed with `ListObjectsV2 delimiter=/`, page by page (1000 keys each). The
//! entries of each page go into the inode table and are handed to `readdir` as soon as the page
//! has arrived, while the next page is already being fetched on another thread: a program
//! that stats every entry (`ls -l`) does that work while the server lists the rest, so a large
//! directory costs little more than the server's own listing.
//!
//! A complete listing stays *fresh* for the metadata TTL, or for as long as it took to fetch if
//! that is longer (its first page was already that old when it ended): while fresh, `readdir`
//! and lookups in the directory are answered from the table — which every change made through
//! the mount keeps exact — with no request.
//!
//! A listing carries sizes and dates, not metadata: mode, owner, mtime and the symlink type live
//! in `x-amz-meta-*`. In a directory listed in one page with at most `listing_head_limit`
//! entries whose metadata is unknown, those entries are HEADed in parallel (see
//! [`super::listing_heads`]: those that may not be regular files before `readdir` answers, the
//! others at the first lookup of one of them), so `ls -l` shows what `stat` will.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use super::dir::DirEntry;
use super::error::{FsError, FsResult};
use super::names::listed_name;
use super::S3Fs;
use crate::cache::inode::{
    start_time, ForeignMarker, InodeTable, NodeAttr, NodeKind, FOLDER_SUFFIX,
};
use crate::s3::xml::ListPage;
use crate::s3::{ListRequest, StorageError};

/// Most entries handed to one `readdir` call (more than one reply can hold).
const READDIR_BATCH: usize = 512;

/// A listed page, and when it was asked for.
type PageResult = (Instant, Result<ListPage, StorageError>);

/// An open directory.
#[derive(Debug, Default)]
pub struct DirHandle {
    listing: Option<Arc<Mutex<Listing>>>,
}

/// A listing in progress (or complete): the entries so far and the page being fetched.
#[derive(Debug)]
struct Listing {
    ino: u64,
    prefix: String,
    /// Entries handed to `readdir` (or ready to be).
    entries: Vec<DirEntry>,
    /// Files listed but not handed out yet: a directory of the same name (which shadows the
    /// file) may still come on a later page.
    held: Vec<DirEntry>,
    seen: HashSet<String>,
    /// Keys kept for files unlinked while open when the listing began: hidden like those kept
    /// now, since a page asked for then may show one whose last close has deleted it since.
    kept_at_start: HashSet<String>,
    /// The next page, being fetched; `None` once the listing is complete.
    next: Option<Receiver<PageResult>>,
    pages: usize,
    started: Instant,
}

impl Listing {
    /// A listing answered from the table: complete already.
    fn complete(ino: u64, entries: Vec<DirEntry>) -> Listing {
        Listing {
            ino,
            prefix: String::new(),
            entries,
            held: Vec::new(),
            seen: HashSet::new(),
            kept_at_start: HashSet::new(),
            next: None,
            pages: 0,
            started: Instant::now(),
        }
    }
}

impl S3Fs {
    /// Open a directory.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        if self.kind_of(ino)? != NodeKind::Dir {
            return Err(FsError::new(libc::ENOTDIR, "not a directory"));
        }
        let fh = self.new_fh();
        self.dir_handles.lock().insert(fh, DirHandle::default());
        Ok(fh)
    }

    /// Close a directory.
    pub fn releasedir(&self, fh: u64) {
        self.dir_handles.lock().remove(&fh);
    }

    /// Entries of an open directory from index `first` on (at most a batch; empty at the end).
    /// `restart` (a `readdir` at offset 0) starts a new listing (or takes a fresh one from the
    /// table); later calls continue it, waiting for the page that holds `first` if it has not
    /// arrived yet.
    pub fn readdir_entries(
        &self,
        ino: u64,
        fh: u64,
        first: usize,
        restart: bool,
    ) -> FsResult<Vec<DirEntry>> {
        let current = self
            .dir_handles
            .lock()
            .get(&fh)
            .and_then(|h| h.listing.clone());
        let listing = match current {
            Some(l) if !restart => l,
            _ => {
                let l = Arc::new(Mutex::new(self.start_listing(ino)?));
                if let Some(h) = self.dir_handles.lock().get_mut(&fh) {
                    h.listing = Some(l.clone());
                }
                l
            }
        };
        if restart {
            // Reading a directory moves its atime by relatime's rule, as a file's read does.
            self.table().accessed(ino, std::time::SystemTime::now());
        }
        // A listing, then the table (the lock order of `open_files`).
        let mut l = listing.lock();
        while first >= l.entries.len() && l.next.is_some() {
            self.next_page(&mut l)?;
        }
        let end = l.entries.len().min(first.saturating_add(READDIR_BATCH));
        let mut out = l
            .entries
            .get(first..end)
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        drop(l);
        // Attributes as they are now, not as the page found them: readdirplus's would set the
        // kernel's back — a file open here with changes not uploaded yet (written, truncated:
        // its last `release` comes after `close` returns), one whose upload completed since
        // the page arrived.
        for e in &mut out {
            if let Ok(a) = self.attrs_of(e.ino) {
                e.attrs = a;
            }
        }
        Ok(out)
    }

    /// How much longer the directory's listing is trusted.
    pub fn listing_ttl(&self, ino: u64) -> Duration {
        self.table()
            .get(ino)
            .and_then(|n| n.listing_expires())
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }

    /// A fresh listing from the table, or the first page of a new one being fetched.
    fn start_listing(&self, ino: u64) -> FsResult<Listing> {
        if self.kind_of(ino)? != NodeKind::Dir {
            return Err(FsError::new(libc::ENOTDIR, "not a directory"));
        }
        // A directory listed in one page is listed again by every `readdir` from the start, so
        // `ls` shows at once what another client made (as s3fs and Mountpoint do), for one
        // request (what it removed leaves once the mount's knowledge of it expires: see
        // `finish_listing`); a longer listing is answered from the table while fresh.
        let paged = self.table().get(ino).is_some_and(|n| n.listing_paged());
        if let Some(entries) = self.fresh_entries(ino).filter(|_| paged) {
            return Ok(Listing::complete(ino, entries));
        }
        let prefix = self.key_of(ino)?;
        let kept_at_start = self.kept_under(&prefix);
        let next = Some(self.fetch_page(&prefix, None));
        Ok(Listing {
            ino,
            prefix,
            entries: Vec::new(),
            held: Vec::new(),
            seen: HashSet::new(),
            kept_at_start,
            next,
            pages: 0,
            started: Instant::now(),
        })
    }

    /// The keys under `prefix` kept for files unlinked while open.
    fn kept_under(&self, prefix: &str) -> HashSet<String> {
        self.kept
            .under(prefix)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// Fetch a page of the listing of `prefix` on a thread of its own.
    fn fetch_page(&self, prefix: &str, token: Option<String>) -> Receiver<PageResult> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let asked = Instant::now();
        let bucket = self.bucket.clone();
        let req = ListRequest {
            prefix: prefix.to_string(),
            delimiter: Some("/".into()),
            continuation_token: token,
            ..ListRequest::default()
        };
        let spawned = std::thread::Builder::new()
            .name("list".into())
            .spawn(move || {
                let _ = tx.send((asked, bucket.list_page(&req)));
            });
        if let Err(e) = spawned {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let _ = tx.send((
                asked,
                Err(StorageError::invalid(
                    "listing",
                    format!("cannot start a thread: {e}"),
                )),
            ));
            return rx;
        }
        rx
    }

    /// Wait for the page being fetched, start fetching the one after it, and add its entries
    /// (the last page also completes the listing).
    fn next_page(&self, l: &mut Listing) -> FsResult<()> {
        let Some(rx) = l.next.take() else {
            return Ok(());
        };
        let (asked, page) = rx.recv().unwrap_or_else(|_| {
            let e = StorageError::invalid("listing", "lister thread ended");
            (Instant::now(), Err(e))
        });
        let page = page?;
        l.pages += 1;
        l.next = match &page.next_continuation_token {
            Some(t) if page.is_truncated => Some(self.fetch_page(&l.prefix, Some(t.clone()))),
            _ => None,
        };
        self.add_page(l, &page, asked);
        if l.next.is_none() {
            self.finish_listing(l);
        }
        Ok(())
    }

    /// Record a page's directories and objects in the table and as entries. `asked`: when the
    /// page was requested — what the mount learnt since (an upload it completed, a HEAD) is
    /// newer than the page and is kept.
    fn add_page(&self, l: &mut Listing, page: &ListPage, asked: Instant) {
        let (ino, prefix) = (l.ino, l.prefix.as_str());
        // Until the listing completes, its entries answer lookups for the TTL — or for as long
        // as the listing has run so far, if longer (the rule of `finish_listing`): `ls -l`
        // stats entries as pages arrive, and with a slow server an entry must not expire (and
        // cost a HEAD and a LIST) before it is stat'ed.
        let expires = self.expiry().max(Instant::now() + l.started.elapsed());
        // Objects kept for files unlinked while open: their names are gone (and stay gone if
        // the file's last close deleted its object after the listing began).
        let kept = self.kept_under(prefix);
        let mut t = self.table();
        for p in &page.common_prefixes {
            let Some(name) = listed_name(prefix, p, true) else {
                drop_name(self, p);
                continue;
            };
            if self.list_dir(&mut t, ino, name, None, expires, &mut l.seen, &mut l.held) {
                self.warn_once(format!(
                    "s3://{}/{prefix}{name} is both a file and a directory; showing the directory",
                    self.bucket.name()
                ));
            }
        }
        for o in &page.objects {
            if o.key == prefix {
                t.set_marker(ino, true);
                continue; // the marker is not its own child
            }
            if kept.contains(&o.key) || l.kept_at_start.contains(&o.key) {
                continue;
            }
            // `name_$folder$`: a directory as Hadoop and S3Fox mark one, always empty. An object
            // with bytes under such a name is a file someone wrote: taken for a marker, it was
            // hidden, and an `rmdir` of the directory it seemed to make deleted it.
            let folder = o
                .key
                .strip_suffix(FOLDER_SUFFIX)
                .filter(|_| o.size == 0)
                .and_then(|k| listed_name(prefix, k, false));
            if let Some(name) = folder {
                let is_dir = |t: &InodeTable| {
                    t.child(ino, name)
                        .and_then(|c| t.get(c))
                        .is_some_and(|n| n.kind() == NodeKind::Dir)
                };
                if !(l.seen.contains(name) && is_dir(&t)) {
                    let mtime = o.last_modified;
                    self.list_dir(&mut t, ino, name, mtime, expires, &mut l.seen, &mut l.held);
                }
                if let Some(c) = t.child(ino, name) {
                    t.set_foreign_marker(c, Some(ForeignMarker::Folder));
                }
                continue;
            }
            let Some(name) = listed_name(prefix, &o.key, false) else {
                drop_name(self, &o.key);
                continue;
            };
            if l.seen.contains(name) || self.dir_listed_later(page, prefix, name) {
                self.warn_once(format!(
                    "s3://{}/{} is both a file and a directory; showing the directory",
                    self.bucket.name(),
                    o.key
                ));
                continue;
            }
            // Removed by the mount since this page was asked for: stays removed.
            let removed = t.negative_until(ino, name).is_some_and(|until| {
                until
                    .checked_sub(self.opts.negative_ttl)
                    .is_some_and(|set| set > asked)
            });
            if removed {
                continue;
            }
            // Newer than this page (the mount uploaded or looked it up since): keep it.
            if let Some(child) = t.learnt_since(ino, name, asked).map(|n| n.ino()) {
                l.seen.insert(name.to_string());
                l.held.extend(self.entry(&t, child, name));
                continue;
            }
            // Keep what a HEAD told us (mode, owner, symlink) while the ETag is the same.
            let known = t.child(ino, name).and_then(|c| t.get(c)).filter(|n| {
                n.kind() != NodeKind::Dir && n.attr().etag.is_some() && n.attr().etag == o.etag
            });
            let (kind, attr) = match known {
                Some(n) => (
                    n.kind(),
                    NodeAttr {
                        size: o.size,
                        ..n.attr().clone()
                    },
                ),
                None => (
                    NodeKind::File,
                    NodeAttr {
                        size: o.size,
                        mtime: o.last_modified.unwrap_or(std::time::UNIX_EPOCH),
                        atime: None,
                        ctime: None,
                        mode: None,
                        uid: None,
                        gid: None,
                        etag: o.etag.clone(),
                    },
                ),
            };
            let child = t.upsert_child(ino, name, kind, attr, expires);
            t.set_listed_class(child, o.storage_class.as_deref());
            l.seen.insert(name.to_string());
            l.held.extend(self.entry(&t, child, name));
        }
        drop(t);
        // Hand out what no later page can shadow: a file `name` whose `name/` sorts after the
        // last key of this page could still turn out to be a directory.
        if l.next.is_none() {
            l.entries.append(&mut l.held);
            return;
        }
        let last = page
            .objects
            .last()
            .map(|o| o.key.as_str())
            .max(page.common_prefixes.last().map(String::as_str));
        let Some(last) = last else { return };
        let (keep, show): (Vec<DirEntry>, Vec<DirEntry>) =
            std::mem::take(&mut l.held).into_iter().partition(|e| {
                e.attrs.kind != NodeKind::Dir && format!("{prefix}{}/", e.name).as_str() > last
            });
        l.entries.extend(show);
        l.held = keep;
    }

    /// Hand out `name` as a directory of `dir` (a common prefix, or another tool's marker),
    /// trusted until `expires`; `mtime`: a date for a directory with none of its own. A file
    /// of the same name listed before is shadowed by it: true if the name was listed before.
    #[allow(clippy::too_many_arguments)]
    fn list_dir(
        &self,
        t: &mut InodeTable,
        dir: u64,
        name: &str,
        mtime: Option<std::time::SystemTime>,
        expires: Instant,
        seen: &mut HashSet<String>,
        held: &mut Vec<DirEntry>,
    ) -> bool {
        let listed_before = !seen.insert(name.to_string());
        let shadowed = listed_before
            .then(|| held.iter().rposition(|e| e.name == name))
            .flatten();
        let mut attr = keep_dir_attr(t, dir, name);
        if attr.mtime == start_time() {
            attr.mtime = mtime.unwrap_or(attr.mtime);
        }
        let child = t.upsert_child(dir, name, NodeKind::Dir, attr, expires);
        if let Some(entry) = self.entry(t, child, name) {
            match shadowed {
                Some(i) => held[i] = entry,
                None => held.push(entry),
            }
        }
        listed_before
    }

    /// The entry `name` of the node `ino`, if the table still has it.
    fn entry(&self, t: &InodeTable, ino: u64, name: &str) -> Option<DirEntry> {
        self.node_attrs(t, ino).map(|attrs| DirEntry {
            ino,
            name: name.to_string(),
            attrs,
        })
    }

    /// The page lists `name/` among its common prefixes (a directory shadows a file).
    fn dir_listed_later(&self, page: &ListPage, prefix: &str, name: &str) -> bool {
        page.common_prefixes.iter().any(|p| {
            p.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix('/'))
                == Some(name)
        })
    }

    /// The listing is complete: forget children that vanished, add open files not uploaded
    /// yet, mark the listing fresh and complete small directories' attributes.
    fn finish_listing(&self, l: &mut Listing) {
        let ino = l.ino;
        let expires = self.expiry();
        let listing_expires = expires.max(Instant::now() + l.started.elapsed());
        let mut t = self.table();
        let mut stale = Vec::new();
        let mut pending = Vec::new();
        // Set since the listing began (created, uploaded or looked up by the mount meanwhile):
        // newer than the listing, so not stale. Or still trusted when it began (the mount made
        // it, looked it up or listed it within the TTL): a directory listed again at each `ls`
        // (one page) shows another client's new names at once, and drops a name it no longer
        // lists once what the mount knew of it expires — as a listing trusted for the TTL
        // did — and a server that leaves `dir/` markers out of listings (s3s-fs) does not make
        // a directory just made vanish.
        let still_known = |c: &u64| {
            t.get(*c)
                .is_some_and(|n| n.attr_set() > l.started || n.attr_fresh(l.started))
        };
        if let Some(n) = t.get(ino) {
            for (name, c) in n.children() {
                if !l.seen.contains(name) {
                    if self.open_files.is_open(*c) || still_known(c) {
                        pending.push((name.clone(), *c));
                    } else {
                        stale.push(name.clone());
                    }
                }
            }
        }
        for name in stale {
            t.remove_child(ino, &name);
        }
        // Open files created here but not uploaded yet, and names still known (above), are
        // listed too.
        pending.sort();
        for (name, c) in pending {
            l.entries.extend(self.entry(&t, c, &name));
        }
        t.listing_complete(ino, listing_expires, l.pages > 1);
        drop(t);
        // Entries of earlier pages are already handed out: only a one-page listing can still
        // be completed before anyone sees it.
        if l.pages <= 1 {
            self.complete_from_heads(ino, &mut l.entries);
        } else {
            // Nothing left for a lookup to HEAD from an earlier, smaller listing.
            self.table().set_heads_deferred(ino, false);
        }
    }

    /// The entries of a directory whose listing is still fresh, from the table, in key order
    /// like a listing; `None` when the listing must be fetched again.
    pub(super) fn fresh_entries(&self, ino: u64) -> Option<Vec<DirEntry>> {
        self.table()
            .get(ino)
            .filter(|n| n.listing_fresh(Instant::now()))?;
        self.known_entries(ino)
    }

    /// The entries of a directory as the table knows them (its last listing and the changes
    /// since), fresh or not, in key order; `None` if it is not a directory the table holds.
    pub(super) fn known_entries(&self, ino: u64) -> Option<Vec<DirEntry>> {
        let t = self.table();
        let dir = t.get(ino).filter(|n| n.kind() == NodeKind::Dir)?;
        let mut children: Vec<(&String, u64)> =
            dir.children().iter().map(|(name, c)| (name, *c)).collect();
        children.sort_unstable();
        let entries = children
            .into_iter()
            .filter_map(|(name, c)| self.entry(&t, c, name))
            .collect();
        Some(entries)
    }
}

fn keep_dir_attr(t: &InodeTable, parent: u64, name: &str) -> NodeAttr {
    t.child(parent, name)
        .and_then(|c| t.get(c))
        .filter(|n| n.kind() == NodeKind::Dir)
        .map(|n| n.attr().clone())
        .unwrap_or_else(NodeAttr::dir)
}

fn drop_name(fs: &S3Fs, key: &str) {
    fs.warn_once(format!(
        "s3://{}/{key}: key cannot be shown as a file name (empty, '.', '..', with a NUL, or over 1024 bytes); hidden",
        fs.bucket.name()
    ));
}
