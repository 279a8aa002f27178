//! How the mount behaves: [`FsOptions`], built from the command line in one place (`main`).

use std::path::PathBuf;
use std::time::Duration;

use super::prefetch;

/// How the mount behaves; built from the command line in one place (`main`).
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Key prefix shown as the root ("" or ending in "/").
    pub prefix: String,
    /// How long attributes and listings are trusted.
    pub metadata_ttl: Duration,
    /// How long a name known absent is trusted.
    pub negative_ttl: Duration,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Owner of files without `x-amz-meta-uid`.
    pub uid: u32,
    /// Group of files without `x-amz-meta-gid`.
    pub gid: u32,
    /// Permission bits of files without `x-amz-meta-mode`.
    pub file_mode: u32,
    /// Permission bits of directories without `x-amz-meta-mode`.
    pub dir_mode: u32,
    /// Where staging files, unsaved uploads and the data cache (`data/`) live.
    pub cache_dir: PathBuf,
    /// Size limit of the on-disk data cache in bytes (0: no data cache).
    pub data_cache_size: u64,
    /// Free space, in percent of the cache dir's file system, the data cache never takes
    /// (unit tests use 0, so what they check does not depend on the machine's disk).
    pub data_cache_min_free_percent: u64,
    /// Directories with at most this many entries of unknown metadata get their attributes
    /// completed by parallel HEADs when listed (0: never).
    pub listing_head_limit: usize,
    /// Metadata as `user.*` extended attributes (off: every xattr call is ENOSYS).
    pub xattr: bool,
    /// POSIX ACLs (`--acl`, with `xattr`): kept, enforced by the kernel, inherited
    /// ([`super::acl`]); off, their names are ENOTSUP.
    pub acl: bool,
    /// Bytes of read-ahead held at once across the mount.
    pub prefetch_memory_limit: u64,
    /// Where the file system is mounted, when known: the kernel's read-ahead for it is raised
    /// there (`fuse::READ_AHEAD`).
    pub mount_point: Option<PathBuf>,
    /// What a user creates is owned by that user (recorded in `x-amz-meta-uid`/`-gid`): on
    /// when other users are let in (`--allow-other`, `--allow-root`). Off, everything belongs
    /// to `uid`/`gid` unless its metadata says otherwise.
    pub owners_from_callers: bool,
    /// Threads fetching read-ahead parts (unit tests, which make a mount per case, use few).
    pub prefetch_workers: usize,
    /// `x-amz-storage-class` of the files the mount creates (`--storage-class`; None: the
    /// server's default, STANDARD). Objects that exist keep their own class.
    pub storage_class: Option<String>,
}

impl FsOptions {
    /// Defaults: listings of up to 512 unknown entries completed by HEADs, 1 s
    /// metadata TTL (close-to-open consistency without a HEAD per `stat` in a tight loop), the
    /// current user as owner, 0644/0755, a 4 GiB data cache.
    pub fn new(cache_dir: PathBuf) -> Self {
        // SAFETY: getuid/getgid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FsOptions {
            prefix: String::new(),
            metadata_ttl: Duration::from_secs(1),
            negative_ttl: Duration::from_secs(1),
            read_only: false,
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            cache_dir,
            data_cache_size: crate::cache::data::DEFAULT_CACHE_SIZE,
            data_cache_min_free_percent: crate::cache::data::MIN_FREE_PERCENT,
            listing_head_limit: 512,
            xattr: true,
            acl: false,
            prefetch_memory_limit: prefetch::DEFAULT_MEMORY_LIMIT,
            mount_point: None,
            owners_from_callers: false,
            prefetch_workers: prefetch::DEFAULT_WORKERS,
            storage_class: None,
        }
    }
}
