//! POSIX ACLs (`setfacl`, `getfacl`), kept as s3fs keeps them and enforced by the kernel.
//!
//! **Storage.** `system.posix_acl_access` and `system.posix_acl_default` are two more names in
//! the object's `x-amz-meta-xattr` entry (see [`super::xattr_json`]), their values the bytes
//! the kernel hands over (the `posix_acl_xattr` form: version 2, then per entry a tag, the
//! permissions and an id, little-endian), base64 inside the JSON — what s3fs writes and reads,
//! so each mount sees the other's ACLs. A directory keeps them in its `dir/` marker. They
//! change like any attribute (a guarded self-copy, or with the pending upload), so a rename or
//! a copy on the server keeps them, and a remount finds them.
//!
//! **Kernel.** With `--acl` (and xattrs on), the mount asks for `FUSE_POSIX_ACL` (the kernel
//! then caches each inode's ACLs, checks permissions with them — it turns
//! `default_permissions` on — and routes `getfacl`/`setfacl` here) and `FUSE_DONT_MASK` (the
//! kernel leaves the umask to us). Without `--acl` the ACL names are ENOTSUP, as the rest of
//! `system.*`, and the kernel applies the umask itself.
//! What the kernel leaves to a FUSE file system, done here as ext4 does it:
//! - `create`, `mkdir`, `mknod` ([`S3Fs::inherit`]): under a directory with a default ACL, the
//!   new entry's access ACL is that default masked by the mode asked for, and the mode by it
//!   (the kernel's `posix_acl_create_masq`); a new directory inherits the default ACL too.
//!   Elsewhere the umask the request carries applies. A symlink gets neither.
//! - setting an access ACL sets the mode's permission bits from it (owner, mask or group,
//!   other); one that says no more than the mode (three entries) is not kept, only the mode
//!   changes (`posix_acl_update_mode`).
//! - `chmod` of a file with an access ACL rewrites the ACL's owner, mask (or group) and other
//!   entries to the new mode, in the same metadata change (`posix_acl_chmod`).
//!
//! **Reading, and why `--acl` is not the default.** The kernel forgets an inode's cached ACLs
//! whenever it takes fresh attributes — every `readdirplus` entry, every `stat` past the TTL —
//! so GNU `ls -l`, which asks every entry's access ACL, costs one `getxattr` round trip per
//! entry on every run (without `--acl`, its first ENOTSUP stops it for the whole mount). The
//! answer never costs a request: it comes from the metadata the mount holds (a listing's
//! HEADs, a `stat`'s), stale or not, as the mode does; an entry whose metadata the mount does
//! not hold (in a directory too large for a listing's HEADs) has none until its `stat` reads
//! it, as its mode shows the default until then — and that `stat` makes the kernel ask again.
//! A value that does not parse (another tool's) is no ACL (and logged), rather than an inode
//! every access to which fails.

use std::ffi::OsStr;

use super::error::{FsError, FsResult};
use super::xattr::{keep, stored};
use super::xattr_json::Xattrs;
use super::S3Fs;
use crate::cache::inode::NodeKind;
use crate::s3::Metadata;

/// The access ACL's name.
pub const ACCESS: &str = "system.posix_acl_access";
/// The default ACL's name (directories only).
pub const DEFAULT: &str = "system.posix_acl_default";

/// The `posix_acl_xattr` header's version.
const VERSION: u32 = 2;
pub(crate) const USER_OBJ: u16 = 0x01;
pub(crate) const USER: u16 = 0x02;
pub(crate) const GROUP_OBJ: u16 = 0x04;
pub(crate) const GROUP: u16 = 0x08;
pub(crate) const MASK: u16 = 0x10;
pub(crate) const OTHER: u16 = 0x20;
/// The id the kernel writes in entries that name no user or group.
pub(crate) const UNDEFINED_ID: u32 = u32::MAX;

/// Which of the two ACLs a name is, if either.
pub fn acl_name(name: &OsStr) -> Option<&'static str> {
    [ACCESS, DEFAULT]
        .into_iter()
        .find(|n| name.as_encoded_bytes() == n.as_bytes())
}

/// One entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A parsed, valid ACL (entries in the kernel's order: by tag, then id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl(Vec<Entry>);

impl Acl {
    /// Parse the `posix_acl_xattr` bytes; `None` for an empty ACL (no entries: a removal).
    /// EINVAL for anything the kernel would not accept either.
    pub fn parse(bytes: &[u8]) -> FsResult<Option<Acl>> {
        let bad = |why: &str| FsError::new(libc::EINVAL, format!("not a POSIX ACL: {why}"));
        let (head, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("no header"))?;
        if u32::from_le_bytes(*head) != VERSION {
            return Err(bad("version is not 2"));
        }
        if rest.len() % 8 != 0 {
            return Err(bad("entries are not 8 bytes each"));
        }
        if rest.is_empty() {
            return Ok(None);
        }
        let mut entries: Vec<Entry> = rest
            .chunks_exact(8)
            .map(|c| Entry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        for e in &mut entries {
            if e.perm & !7 != 0 {
                return Err(bad("permissions beyond rwx"));
            }
            match e.tag {
                USER | GROUP => {}
                USER_OBJ | GROUP_OBJ | MASK | OTHER => e.id = UNDEFINED_ID,
                _ => return Err(bad("unknown tag")),
            }
        }
        entries.sort_by_key(|e| (e.tag, e.id));
        let count = |tag| entries.iter().filter(|e| e.tag == tag).count();
        if count(USER_OBJ) != 1 || count(GROUP_OBJ) != 1 || count(OTHER) != 1 {
            return Err(bad("not one owner, group and other entry each"));
        }
        let named = count(USER) + count(GROUP);
        if count(MASK) > 1 || (named > 0 && count(MASK) == 0) {
            return Err(bad("named entries need one mask entry"));
        }
        if entries
            .windows(2)
            .any(|w| w[0].tag == w[1].tag && w[0].id == w[1].id)
        {
            return Err(bad("a user or group named twice"));
        }
        Ok(Some(Acl(entries)))
    }

    /// The `posix_acl_xattr` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        for e in &self.0 {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    /// The permission bits the ACL makes (owner, mask or else group, other), and whether it
    /// says no more than they do (only the three base entries): the kernel's
    /// `posix_acl_equiv_mode`.
    pub fn mode(&self) -> (u32, bool) {
        let mut mode = 0;
        let mut equivalent = true;
        for e in &self.0 {
            let p = u32::from(e.perm);
            match e.tag {
                USER_OBJ => mode |= p << 6,
                GROUP_OBJ => mode |= p << 3,
                OTHER => mode |= p,
                MASK => {
                    mode = (mode & !0o070) | (p << 3);
                    equivalent = false;
                }
                _ => equivalent = false,
            }
        }
        // The mask comes after the group entry in the kernel's order, so it wins.
        (mode, equivalent)
    }

    /// A new entry's ACL from its directory's default: the ACL masked by `mode`'s permission
    /// bits and the bits by the ACL (the kernel's `posix_acl_create_masq`). True if the ACL
    /// says more than the mode (it is then kept).
    fn create_masq(&mut self, mode: &mut u32) -> bool {
        let mut m = *mode & 0o777;
        let mut extended = false;
        for e in &mut self.0 {
            match e.tag {
                USER_OBJ => {
                    e.perm &= ((m >> 6) & 7) as u16;
                    m &= (u32::from(e.perm) << 6) | !0o700;
                }
                OTHER => {
                    e.perm &= (m & 7) as u16;
                    m &= u32::from(e.perm) | !0o007;
                }
                USER | GROUP | MASK => extended = true,
                _ => {}
            }
        }
        let group_tag = if self.0.iter().any(|e| e.tag == MASK) {
            MASK
        } else {
            GROUP_OBJ
        };
        if let Some(e) = self.0.iter_mut().find(|e| e.tag == group_tag) {
            e.perm &= ((m >> 3) & 7) as u16;
            m &= (u32::from(e.perm) << 3) | !0o070;
        }
        *mode = (*mode & !0o777) | m;
        extended
    }

    /// The ACL after a `chmod` to `mode`: owner, mask (else group) and other take its bits
    /// (the kernel's `posix_acl_chmod`).
    fn chmod(&mut self, mode: u32) {
        let has_mask = self.0.iter().any(|e| e.tag == MASK);
        for e in &mut self.0 {
            match e.tag {
                USER_OBJ => e.perm = ((mode >> 6) & 7) as u16,
                MASK => e.perm = ((mode >> 3) & 7) as u16,
                GROUP_OBJ if !has_mask => e.perm = ((mode >> 3) & 7) as u16,
                OTHER => e.perm = (mode & 7) as u16,
                _ => {}
            }
        }
    }
}

/// The ACL kept under `name` in `x`, if any that parses (see the module documentation).
fn kept(x: &Xattrs, name: &str) -> Option<Acl> {
    let bytes = x.get(name)?;
    match Acl::parse(bytes) {
        Ok(acl) => acl,
        Err(e) => {
            log::warn!("{name} ignored: {e}");
            None
        }
    }
}

/// `chmod`'s part in the metadata: the access ACL, if there is one, takes `mode`.
pub fn chmod_kept(meta: &mut Metadata, mode: u32) {
    let mut x = stored(meta);
    if let Some(mut acl) = kept(&x, ACCESS) {
        acl.chmod(mode);
        x.insert(ACCESS.to_string(), acl.to_bytes());
        keep(meta, &x);
    }
}

/// The permission bits a new entry asks for and the umask of the caller (see
/// [`S3Fs::inherit`]). A bare mode is one with no umask left to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateMode {
    /// The mode the program asked for.
    pub mode: u32,
    /// The caller's umask, applied where no default ACL is.
    pub umask: u32,
}

impl From<u32> for CreateMode {
    fn from(mode: u32) -> Self {
        CreateMode { mode, umask: 0 }
    }
}

/// What a new entry gets from its directory: its permission bits, and the ACLs to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inherited {
    /// The permission bits (with the set-id and sticky bits asked for).
    pub mode: u32,
    /// `system.posix_acl_*` names and values (empty without a default ACL).
    pub acls: Xattrs,
}

impl S3Fs {
    /// True if the mount keeps and serves POSIX ACLs (`--acl`, with xattrs on).
    pub(crate) fn acls_on(&self) -> bool {
        self.opts.acl && self.opts.xattr
    }

    /// The mode and ACLs a new `kind` in `parent` gets (see the module documentation).
    pub(crate) fn inherit(
        &self,
        parent: u64,
        kind: NodeKind,
        asked: CreateMode,
    ) -> FsResult<Inherited> {
        let mode = asked.mode & 0o7777;
        let default = match kind {
            NodeKind::Symlink => None,
            _ if !self.acls_on() => None,
            _ => kept(&stored(&self.known_metadata(parent)?), DEFAULT),
        };
        let Some(default) = default else {
            return Ok(Inherited {
                mode: mode & !(asked.umask & 0o777),
                acls: Xattrs::new(),
            });
        };
        let mut access = default.clone();
        let mut mode = mode;
        let mut acls = Xattrs::new();
        if access.create_masq(&mut mode) {
            acls.insert(ACCESS.to_string(), access.to_bytes());
        }
        if kind == NodeKind::Dir {
            acls.insert(DEFAULT.to_string(), default.to_bytes());
        }
        Ok(Inherited { mode, acls })
    }

    /// `getxattr` of an ACL name: the value, or ENODATA.
    pub(crate) fn get_acl(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        kept(&stored(&self.known_metadata(ino)?), name)
            .map(|acl| acl.to_bytes())
            .ok_or_else(|| FsError::new(libc::ENODATA, format!("no {name}")))
    }

    /// `setxattr` of an ACL name (`value` empty of entries: a removal).
    pub(crate) fn set_acl(&self, ino: u64, name: &'static str, value: &[u8]) -> FsResult<()> {
        let kind = self.kind_of(ino)?;
        if kind == NodeKind::Symlink {
            return Err(FsError::new(libc::ENOTSUP, "no ACL on a symlink"));
        }
        let acl = Acl::parse(value)?;
        if name == DEFAULT && kind != NodeKind::Dir {
            return match acl {
                Some(_) => Err(FsError::new(
                    libc::EACCES,
                    "a default ACL is for directories",
                )),
                None => Ok(()),
            };
        }
        let Some(acl) = acl else {
            return self.remove_acl(ino, name);
        };
        if name == DEFAULT {
            let value = acl.to_bytes();
            return self.update_metadata(
                ino,
                |meta, _| store(meta, name, Some(&value)),
                &Default::default(),
            );
        }
        let (bits, equivalent) = acl.mode();
        let value = (!equivalent).then(|| acl.to_bytes());
        let perm = (u32::from(self.attrs_of(ino)?.perm) & !0o777) | bits;
        let type_bits = kind.type_bits();
        let edit = |meta: &mut Metadata, cur: &super::attr::FileAttrs| {
            let perm = (u32::from(cur.perm) & !0o777) | bits;
            meta.insert("mode", (perm | type_bits).to_string());
            store(meta, name, value.as_deref())
        };
        let attrs = crate::cache::inode::AttrUpdate {
            mode: Some(perm),
            ..Default::default()
        };
        self.update_metadata(ino, edit, &attrs)
    }

    /// `removexattr` of an ACL name: done when there is none (as on a disk), without a request.
    pub(crate) fn remove_acl(&self, ino: u64, name: &'static str) -> FsResult<()> {
        if !stored(&self.known_metadata(ino)?).contains_key(name) {
            return Ok(());
        }
        self.update_metadata(ino, |meta, _| store(meta, name, None), &Default::default())
    }

    /// The metadata `ino` shows, from what the mount holds (see the module documentation),
    /// without a request: an open file's pending metadata, else the table's (stale or not,
    /// or of an older version, as the mode shown is), else none.
    fn known_metadata(&self, ino: u64) -> FsResult<Metadata> {
        if let Some(f) = self.open_files.get(ino) {
            let of = f.lock();
            if let Some(m) = of.pending_metadata().filter(|_| of.is_dirty()) {
                return Ok(m.clone());
            }
            if of.is_unlinked() {
                drop(of);
                // What it keeps in memory: no request.
                return self.current_metadata(ino);
            }
        }
        let t = self.table();
        let n = t
            .get(ino)
            .ok_or_else(|| FsError::not_found(format!("inode {ino} is unknown")))?;
        Ok(n.meta().map(|m| m.metadata.clone()).unwrap_or_default())
    }
}

/// Keep `value` under `name` in the metadata's `x-amz-meta-xattr` (remove it for `None`).
fn store(meta: &mut Metadata, name: &str, value: Option<&[u8]>) -> FsResult<()> {
    let mut x = stored(meta);
    match value {
        Some(v) => x.insert(name.to_string(), v.to_vec()),
        None => x.remove(name),
    };
    keep(meta, &x);
    if meta.encoded_size() > crate::s3::meta::MAX_USER_METADATA_BYTES {
        return Err(FsError::new(libc::E2BIG, "user metadata over 2 KB"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        Acl(entries
            .iter()
            .map(|&(tag, perm, id)| Entry { tag, perm, id })
            .collect())
        .to_bytes()
    }

    const U: u32 = UNDEFINED_ID;

    #[test]
    fn the_kernel_form_reads_back_and_what_it_refuses_is_refused() {
        let minimal = acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 4, U)]);
        let a = Acl::parse(&minimal).unwrap().unwrap();
        assert_eq!(a.to_bytes(), minimal);
        assert_eq!(a.mode(), (0o644, true));
        let named = acl(&[
            (USER_OBJ, 7, U),
            (USER, 7, 1000),
            (GROUP_OBJ, 5, U),
            (MASK, 7, U),
            (OTHER, 0, U),
        ]);
        assert_eq!(Acl::parse(&named).unwrap().unwrap().mode(), (0o770, false));
        assert_eq!(Acl::parse(&VERSION.to_le_bytes()).unwrap(), None);
        for bad in [
            vec![],
            vec![1, 0, 0, 0],
            minimal[..minimal.len() - 1].to_vec(),
            acl(&[(USER_OBJ, 6, U), (OTHER, 4, U)]),
            acl(&[
                (USER_OBJ, 6, U),
                (USER, 6, 5),
                (GROUP_OBJ, 4, U),
                (OTHER, 4, U),
            ]),
            acl(&[(USER_OBJ, 8, U), (GROUP_OBJ, 4, U), (OTHER, 4, U)]),
            acl(&[
                (USER_OBJ, 6, U),
                (GROUP_OBJ, 4, U),
                (OTHER, 4, U),
                (0x40, 0, U),
            ]),
        ] {
            assert_eq!(Acl::parse(&bad).unwrap_err().errno, libc::EINVAL, "{bad:?}");
        }
    }

    #[test]
    fn a_new_entry_masks_the_default_by_its_mode_as_the_kernel_does() {
        let default = acl(&[
            (USER_OBJ, 7, U),
            (USER, 7, 1000),
            (GROUP_OBJ, 5, U),
            (MASK, 7, U),
            (OTHER, 5, U),
        ]);
        let mut a = Acl::parse(&default).unwrap().unwrap();
        let mut mode = 0o666;
        assert!(a.create_masq(&mut mode));
        assert_eq!(mode, 0o664);
        assert_eq!(
            a.to_bytes(),
            acl(&[
                (USER_OBJ, 6, U),
                (USER, 7, 1000),
                (GROUP_OBJ, 5, U),
                (MASK, 6, U),
                (OTHER, 4, U),
            ])
        );
        let mut plain = Acl::parse(&acl(&[(USER_OBJ, 7, U), (GROUP_OBJ, 0, U), (OTHER, 0, U)]))
            .unwrap()
            .unwrap();
        let mut mode = 0o777;
        assert!(!plain.create_masq(&mut mode));
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn chmod_sets_owner_mask_and_other() {
        let mut a = Acl::parse(&acl(&[
            (USER_OBJ, 7, U),
            (USER, 7, 1000),
            (GROUP_OBJ, 5, U),
            (MASK, 7, U),
            (OTHER, 5, U),
        ]))
        .unwrap()
        .unwrap();
        a.chmod(0o640);
        assert_eq!(a.mode(), (0o640, false));
        assert!(a.0.contains(&Entry {
            tag: GROUP_OBJ,
            perm: 5,
            id: U
        }));
    }
}
