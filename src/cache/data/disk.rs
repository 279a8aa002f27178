//! What the data cache does with its directory beyond one block: writing a block atomically,
//! rebuilding the index from the files at start, the names of block files, the free space of
//! the file system, and how many block files may stay open.

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::*;

/// Block files kept open for reading, at most: a random reader of a 1 GiB object touches all
/// its 1 MiB blocks, and a hit that must open its file costs a path lookup and an open as well
/// as the `pread` (measured: most of the difference between 20 and 16 µs per 4 KiB read).
const OPEN_BLOCKS_MAX: usize = 1024;
/// ... and never more than this share (1/N) of the process's limit of open files.
const OPEN_BLOCKS_SHARE_OF_LIMIT: u64 = 4;
/// The soft limit of open files is raised up to the hard limit, but not past this.
const NOFILE_WANTED: u64 = 65536;

impl DataCache {
    pub(super) fn write_atomically(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(TMP_DIR)
            .join(format!("{}.{n}", std::process::id()));
        let written = (|| {
            let create = || {
                private::open_options()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
            };
            // Made again if removed while mounted, or nothing would be cached until a remount.
            let mut f = private::create_in(&self.dir.join(TMP_DIR), create)?;
            f.write_all(data)?;
            match std::fs::rename(&tmp, path) {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if let Some(parent) = path.parent() {
                        private::create_dir_all(parent)?;
                    }
                    // The temp dir itself may have been removed: then this fails too.
                    std::fs::rename(&tmp, path)
                }
                other => other,
            }
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Scan the directory: index valid block files oldest first, delete the rest of what is
    /// ours (temporary files, bad names, empty or oversized blocks), then trim to the limit.
    pub(super) fn rebuild_index(&self) {
        let mut found: Vec<(SystemTime, BlockKey, u64)> = Vec::new();
        let mut removed = 0usize;
        let Ok(top) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in top.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            if name == TMP_DIR {
                if let Ok(rd) = std::fs::read_dir(&path) {
                    for e in rd.flatten() {
                        if std::fs::remove_file(e.path()).is_ok() {
                            removed += 1;
                        }
                    }
                }
                continue;
            }
            let is_shard = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_shard || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue; // the lock file, or not ours: left alone
            }
            let Ok(rd) = std::fs::read_dir(&path) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                let meta = match e.metadata() {
                    Ok(m) if m.is_file() => m,
                    _ => continue,
                };
                let key = parse_block_name(&e.file_name().to_string_lossy())
                    .filter(|k| hex::encode(k.id).starts_with(&*name));
                match key {
                    Some(k) if meta.len() > 0 && meta.len() <= self.cfg.block_size => {
                        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                        found.push((mtime, k, meta.len()));
                    }
                    _ => {
                        if std::fs::remove_file(&p).is_ok() {
                            removed += 1;
                        }
                    }
                }
            }
        }
        found.sort_by_key(|(t, _, _)| *t);
        let mut st = self.state.lock();
        for (_, key, len) in found {
            st.index.push(key, len);
            st.used += len;
        }
        while st.used > self.cfg.max_bytes {
            if self.evict_one(&mut st).is_none() {
                break;
            }
        }
        if removed > 0 {
            log::info!(
                "data cache: removed {removed} temporary or invalid files from {}",
                self.dir.display()
            );
        }
        log::debug!(
            "data cache: {} blocks, {} bytes in {}",
            st.index.len(),
            st.used,
            self.dir.display()
        );
    }
}

/// How many block files to keep open: [`OPEN_BLOCKS_MAX`], within a share of the limit of open
/// files, whose soft value is first raised towards the hard one (as Go and the JVM do at
/// start: the soft default of 1024 is a relic of `select`, which nothing here uses).
pub(super) fn open_blocks_capacity() -> std::num::NonZeroUsize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            1024
        } else {
            let wanted = lim.rlim_max.min(NOFILE_WANTED);
            if lim.rlim_cur < wanted {
                let raised = libc::rlimit {
                    rlim_cur: wanted,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = wanted;
                }
            }
            lim.rlim_cur
        }
    };
    let n = usize::try_from(soft / OPEN_BLOCKS_SHARE_OF_LIMIT).unwrap_or(OPEN_BLOCKS_MAX);
    std::num::NonZeroUsize::new(n.min(OPEN_BLOCKS_MAX)).unwrap_or(std::num::NonZeroUsize::MIN)
}

/// `<64 hex>.<index>` → the key.
pub(super) fn parse_block_name(name: &str) -> Option<BlockKey> {
    let (h, i) = name.split_once('.')?;
    if h.len() != 64 || !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    if i.is_empty() || !i.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut id = [0u8; 32];
    hex::decode_to_slice(h, &mut id).ok()?;
    Some(BlockKey {
        id,
        index: i.parse().ok()?,
    })
}

/// (bytes available to us, total bytes) of the file system holding `dir`.
pub(super) fn free_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value for it.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid pointer to a statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let unit = s.f_frsize as u64;
    Some((
        (s.f_bavail as u64).saturating_mul(unit),
        (s.f_blocks as u64).saturating_mul(unit),
    ))
}
