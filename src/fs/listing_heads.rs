//! The metadata a listing does not carry (mode, owner, mtime, the symlink and special-file
//! types live in `x-amz-meta-*`): HEADs, in parallel, of the entries of a small directory.
//!
//! Directories and files of at most `ALWAYS_REGULAR_ABOVE` bytes, which may be symlinks or
//! special files, are HEADed before `readdir` answers, so that their types are right. Larger
//! files can only be regular: their HEADs wait for the first lookup of one of them, which
//! HEADs them all (`S3Fs::complete_deferred`); until then `readdirplus` hands them out with
//! attributes the kernel does not keep. `ls -l` thus shows what `stat` will, and a `find` that
//! looks at names and types costs no request per file.
//!
//! In a directory too large for that (over `listing_head_limit` unknown entries, or more than
//! one listing page, whose pages are handed out as they arrive), a small file whose metadata
//! is not known may still be a symlink or a special file: it is handed out with attributes
//! the kernel does not keep too, and its first lookup HEADs it with the next such files in
//! name order (a window of `listing_head_limit`), so that `ls -l`, `cp -a`, `rsync` and `tar`
//! see a symlink as a symlink — trusting the listing's "regular file" had them copy the
//! link's target path as a file's content. `readdir`'s own type for such a file stays
//! "regular" until it is looked up (FUSE has no "unknown" type to send).

use std::collections::HashSet;

use parking_lot::{Condvar, Mutex};

use super::attr::marker_attrs;
use super::dir::DirEntry;
use super::S3Fs;
use crate::cache::inode::{AttrUpdate, InodeTable, NodeKind, ObjectMeta};
use crate::s3::ObjectInfo;

/// HEADs in flight while completing a listing's attributes.
const LISTING_HEAD_PARALLELISM: usize = 16;

/// A file larger than this is a regular file whatever its metadata says: a symlink's object
/// holds its target (at most `PATH_MAX` bytes), a special file's none. Its type is known from
/// the listing, so its HEAD can wait for the first lookup.
const ALWAYS_REGULAR_ABOVE: u64 = 4096;

impl S3Fs {
    /// HEAD the entries whose metadata is not known (for their current ETag), in parallel, if
    /// there are at most `listing_head_limit` of them: the directories and the files that may
    /// not be regular files before `readdir` answers (their type lives in the metadata), the
    /// other files at the first lookup of one of them ([`Self::complete_deferred`]), so that a
    /// `find` that looks at names and types only costs no HEAD for them.
    ///
    /// Directories too: a directory's mode and owner live in its marker (`dir/`), and with
    /// `allow_other` the kernel checks access against what we report — a 0700 directory must
    /// not show as 0755 because it was first seen in its parent's listing.
    pub(super) fn complete_from_heads(&self, parent: u64, entries: &mut [DirEntry]) {
        let (mut now, mut later) = (Vec::new(), Vec::new());
        {
            let t = self.table();
            for (i, e) in entries.iter().enumerate() {
                let dir = e.attrs.kind == NodeKind::Dir;
                let unknown = t.get(e.ino).is_some_and(|n| {
                    if dir {
                        n.meta().is_none()
                    } else {
                        n.metadata_unknown()
                    }
                });
                if !unknown {
                    continue;
                }
                if dir || e.attrs.size <= ALWAYS_REGULAR_ABOVE {
                    now.push(i);
                } else {
                    later.push(i);
                }
            }
        }
        let within = now.len() + later.len() <= self.opts.listing_head_limit;
        // (Set either way: an earlier listing's deferred HEADs are not this one's.)
        self.table()
            .set_heads_deferred(parent, within && !later.is_empty());
        if within {
            self.head_entries(parent, entries, &now);
        }
    }

    /// The first lookup of a file whose metadata a listing left to be HEADed
    /// ([`Self::complete_from_heads`]) HEADs, in parallel, every such file of its directory:
    /// a program that stats one (`ls -l`, `du`) stats them all.
    ///
    /// A small file of a directory too large to HEAD before `readdir` answers (its type is not
    /// known: see the module documentation) is HEADed with the next such files in name order,
    /// `listing_head_limit` of them: `ls -l` of 10 000 entries makes rounds of parallel HEADs,
    /// and a `stat` of one file of a large directory does not HEAD them all.
    pub(crate) fn complete_deferred(&self, ino: u64) {
        let parent = {
            let t = self.table();
            if !self.metadata_deferred(&t, ino) {
                return;
            }
            let Some(n) = t.get(ino) else { return };
            n.parent()
        };
        // One round per directory: a lookup of a sibling meanwhile waits for it, not its own
        // (unless the round left it out).
        let Some(_round) = DeferredRound::begin(self, parent, ino) else {
            return;
        };
        let all_large = self.table().get(parent).is_some_and(|p| p.heads_deferred());
        // The table's entries even once the listing expired: `ls -l` of a directory that took
        // longer to list than the TTL stats most entries after that, and a lookup by name
        // would ask HEAD and LIST of each (a LIST of a large directory is slow on some
        // servers); a HEAD that finds the file refreshes it as the lookup would.
        if let Some(mut entries) = self.known_entries(parent) {
            let todo: Vec<usize> = {
                let t = self.table();
                (0..entries.len())
                    .filter(|&i| self.metadata_deferred(&t, entries[i].ino))
                    .collect()
            };
            let limit = self.opts.listing_head_limit;
            let todo = if todo.len() <= limit {
                todo
            } else {
                // The window from this file on, in name order (what `ls -l` stats next).
                let from = todo
                    .iter()
                    .position(|&i| entries[i].ino == ino)
                    .unwrap_or(0);
                todo[from..].iter().take(limit).copied().collect()
            };
            self.head_entries(parent, &mut entries, &todo);
        }
        if all_large {
            self.table().set_heads_deferred(parent, false);
        }
    }

    /// True if `ino` is a file whose metadata waits for its first lookup: `readdirplus` hands
    /// it out with attributes the kernel must not keep, so that a `stat` comes here. Either
    /// its listing left the HEADs of its directory's larger files to the first lookup, or it
    /// is small enough to be a symlink or a special file and was not HEADed (see the module
    /// documentation; not with `--listing-head-limit 0`, which trusts listings).
    pub(crate) fn metadata_deferred(&self, t: &InodeTable, ino: u64) -> bool {
        t.get(ino).is_some_and(|n| {
            n.kind() == NodeKind::File
                && n.metadata_unknown()
                && ((n.attr().size <= ALWAYS_REGULAR_ABOVE && self.opts.listing_head_limit > 0)
                    || t.get(n.parent()).is_some_and(|p| p.heads_deferred()))
        })
    }

    /// HEAD `entries[i]` for each `i` of `todo`, in parallel, and record what they say.
    fn head_entries(&self, parent: u64, entries: &mut [DirEntry], todo: &[usize]) {
        if todo.is_empty() {
            return;
        }
        let Some(parent_key) = self.table().key_of(parent) else {
            return;
        };
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Mutex<Vec<(usize, Option<ObjectInfo>)>> = Default::default();
        let asked = std::time::Instant::now();
        std::thread::scope(|s| {
            for _ in 0..LISTING_HEAD_PARALLELISM.min(todo.len()) {
                s.spawn(|| loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&i) = todo.get(k) else { return };
                    let dir = entries[i].attrs.kind == NodeKind::Dir;
                    let slash = if dir { "/" } else { "" };
                    let key = format!("{parent_key}{}{slash}", entries[i].name);
                    match self.bucket.head(&key) {
                        Ok(info) => results.lock().push((i, Some(info))),
                        // An implicit directory: no marker, nothing more to know.
                        Err(e) if dir && e.is_not_found() => results.lock().push((i, None)),
                        // Gone or unreadable meanwhile: keep what the listing said.
                        Err(e) => log::debug!("{key}: {e}"),
                    }
                });
            }
        });
        let expires = self.expiry();
        for (i, info) in std::mem::take(&mut *results.lock()) {
            if entries[i].attrs.kind != NodeKind::Dir {
                if let Some(info) = info {
                    let name = entries[i].name.clone();
                    if let Ok(a) = self.record_object(parent, &name, &info, asked) {
                        entries[i].attrs = a;
                    }
                }
                continue;
            }
            let ino = entries[i].ino;
            {
                let mut t = self.table();
                if !t.get(ino).is_some_and(|n| n.kind() == NodeKind::Dir) {
                    continue;
                }
                t.set_marker(ino, info.is_some());
                // No marker: an implicit directory, nothing more to know.
                let (meta, attrs) = match info {
                    Some(info) => (ObjectMeta::from(&info), marker_attrs(&info)),
                    None => (ObjectMeta::default(), AttrUpdate::default()),
                };
                t.record_meta(ino, meta, &attrs, expires);
            }
            if let Ok(a) = self.attrs_of(ino) {
                entries[i].attrs = a;
            }
        }
    }
}

/// The directories whose deferred HEADs are being made, and the wake-up of those waiting for
/// one of them.
#[derive(Debug, Default)]
pub struct DeferredRounds {
    busy: Mutex<HashSet<u64>>,
    done: Condvar,
}

/// The round of deferred HEADs of one directory, made by whoever holds it; ended (others
/// woken) when dropped, even by a panic.
struct DeferredRound<'a> {
    rounds: &'a DeferredRounds,
    dir: u64,
}

impl<'a> DeferredRound<'a> {
    /// Wait for a round of `dir` in progress; then `None` if `ino`'s HEAD is no longer to
    /// make (that round made it).
    fn begin(fs: &'a S3Fs, dir: u64, ino: u64) -> Option<Self> {
        let rounds = &fs.deferred_heads;
        let mut busy = rounds.busy.lock();
        while busy.contains(&dir) {
            rounds.done.wait(&mut busy);
        }
        if !fs.metadata_deferred(&fs.table(), ino) {
            return None;
        }
        busy.insert(dir);
        Some(DeferredRound { rounds, dir })
    }
}

impl Drop for DeferredRound<'_> {
    fn drop(&mut self) {
        self.rounds.busy.lock().remove(&self.dir);
        self.rounds.done.notify_all();
    }
}
