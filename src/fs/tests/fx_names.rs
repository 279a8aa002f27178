//! The test harness's calls on names and extended attributes (mkdir, rmdir, unlink, rename,
//! symlink, listings, xattrs), as a program's calls reach `S3Fs` through the kernel; the rest
//! of [`Fx`] is in the module above.

use super::*;

impl Fx {
    // ---- names ----------------------------------------------------------------------------

    /// `mkdir(path)`.
    pub fn mkdir(&self, path: &str) -> FsResult<()> {
        let (parent, name) = split(path);
        let p = self.dir_ino(parent)?;
        if self.fs.lookup(p, os(name)).is_ok() {
            return Err(FsError::new(libc::EEXIST, format!("{path} exists")));
        }
        let a = self.fs.mkdir(p, os(name), DIR_MODE, None)?;
        self.fs.note_lookup(a.ino);
        Ok(())
    }

    /// `rmdir(path)`.
    pub fn rmdir(&self, path: &str) -> FsResult<()> {
        let (parent, name) = split(path);
        let p = self.dir_ino(parent)?;
        if self.fs.lookup(p, os(name))?.kind != NodeKind::Dir {
            return Err(FsError::new(
                libc::ENOTDIR,
                format!("{path}: not a directory"),
            ));
        }
        self.fs.rmdir(p, os(name))
    }

    /// `unlink(path)`.
    pub fn unlink(&self, path: &str) -> FsResult<()> {
        let (parent, name) = split(path);
        let p = self.dir_ino(parent)?;
        if self.fs.lookup(p, os(name))?.kind == NodeKind::Dir {
            return Err(FsError::new(libc::EISDIR, format!("{path} is a directory")));
        }
        self.fs.unlink(p, os(name))
    }

    /// `rename(from, to)`.
    pub fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        self.rename_flags(from, to, 0)
    }

    /// `renameat2(from, to, flags)`, with the checks the VFS makes before it asks the file
    /// system.
    pub fn rename_flags(&self, from: &str, to: &str, flags: u32) -> FsResult<()> {
        let (fp, fname) = split(from);
        let (tp, tname) = split(to);
        // Both parents are resolved first, then the source.
        let fp_ino = self.dir_ino(fp)?;
        let tp_ino = self.dir_ino(tp)?;
        let src = self.fs.lookup(fp_ino, os(fname))?;
        if from == to {
            return Ok(());
        }
        // The source is an ancestor of the target: EINVAL; the target of the source: ENOTEMPTY.
        if to.starts_with(&format!("{from}/")) {
            return Err(FsError::new(libc::EINVAL, "a directory into itself"));
        }
        if from.starts_with(&format!("{to}/")) {
            return Err(FsError::new(libc::ENOTEMPTY, "onto an ancestor"));
        }
        match self.fs.lookup(tp_ino, os(tname)) {
            Ok(t) if t.ino == src.ino => return Ok(()),
            Ok(_) if flags & libc::RENAME_NOREPLACE != 0 => {
                return Err(FsError::new(libc::EEXIST, format!("{to} exists")));
            }
            Ok(t) => match (src.kind == NodeKind::Dir, t.kind == NodeKind::Dir) {
                (true, false) => return Err(FsError::new(libc::ENOTDIR, "not a directory")),
                (false, true) => return Err(FsError::new(libc::EISDIR, "a directory")),
                _ => {}
            },
            Err(e) if e.errno == libc::ENOENT => {}
            Err(e) => return Err(e),
        }
        self.fs.rename(fp_ino, os(fname), tp_ino, os(tname), flags)
    }

    /// `symlink(target, path)`.
    pub fn symlink(&self, target: &str, path: &str) -> FsResult<()> {
        let (parent, name) = split(path);
        let p = self.dir_ino(parent)?;
        let a = self.fs.symlink(p, os(name), Path::new(target), None)?;
        self.fs.note_lookup(a.ino);
        Ok(())
    }

    /// `readlink(path)`.
    pub fn readlink(&self, path: &str) -> FsResult<String> {
        let ino = self.ino(path)?;
        Ok(String::from_utf8(self.fs.readlink(ino)?).unwrap())
    }

    /// The entries of the directory `path` (without `.` and `..`), every page of them, as
    /// `readdir` hands them out.
    pub fn ls_entries(&self, path: &str) -> FsResult<Vec<DirEntry>> {
        let ino = self.dir_ino(path)?;
        let fh = self.fs.opendir(ino)?;
        let mut out: Vec<DirEntry> = Vec::new();
        let result = loop {
            match self.fs.readdir_entries(ino, fh, out.len(), out.is_empty()) {
                Ok(batch) if batch.is_empty() => break Ok(()),
                Ok(batch) => out.extend(batch),
                Err(e) => break Err(e),
            }
        };
        self.fs.releasedir(fh);
        result.map(|()| out)
    }

    /// The names in the directory `path`, sorted (`readdir` gives a page's directories first).
    pub fn ls(&self, path: &str) -> FsResult<Vec<String>> {
        let mut names: Vec<String> = self.ls_entries(path)?.into_iter().map(|e| e.name).collect();
        names.sort();
        Ok(names)
    }

    // ---- extended attributes --------------------------------------------------------------

    /// `setxattr(path, name, value, flags)`.
    pub fn setxattr(&self, path: &str, name: &str, value: &str, flags: i32) -> FsResult<()> {
        let ino = self.ino(path)?;
        self.fs.setxattr(ino, os(name), value.as_bytes(), flags)
    }

    /// `getxattr(path, name)` into a buffer of `size` bytes (the size protocol: 0 asks for the
    /// length).
    pub fn getxattr_sized(&self, path: &str, name: &str, size: u32) -> FsResult<XattrReply> {
        let ino = self.ino(path)?;
        sized(self.fs.getxattr(ino, os(name))?, size)
    }

    /// The value of an xattr, asked as `getfattr` does: its length first, then the value.
    pub fn getxattr(&self, path: &str, name: &str) -> FsResult<String> {
        let XattrReply::Size(len) = self.getxattr_sized(path, name, 0)? else {
            panic!("size 0 asks for the length");
        };
        match self.getxattr_sized(path, name, len)? {
            XattrReply::Data(d) => Ok(String::from_utf8(d).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    /// `listxattr(path)`: the names.
    pub fn listxattr(&self, path: &str) -> FsResult<Vec<String>> {
        let ino = self.ino(path)?;
        let list = self.fs.listxattr(ino)?;
        Ok(list
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8(n.to_vec()).unwrap())
            .collect())
    }

    /// `removexattr(path, name)`.
    pub fn removexattr(&self, path: &str, name: &str) -> FsResult<()> {
        let ino = self.ino(path)?;
        self.fs.removexattr(ino, os(name))
    }

    /// The `user.x-amz-meta-*` attributes of `path` with their values, the mount's own
    /// (mode, owner, times, device number) left out.
    pub fn user_xattrs(&self, path: &str) -> FsResult<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for name in self.listxattr(path)? {
            let short = name.strip_prefix("user.x-amz-meta-").unwrap().to_string();
            if !reference_model::OWN_KEYS.contains(&short.as_str()) {
                out.insert(short, self.getxattr(path, &name)?);
            }
        }
        Ok(out)
    }
}
