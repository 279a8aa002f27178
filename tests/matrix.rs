//! Issue 11's "done when", on whichever server the tests run against (`S3MOUNT_TEST_SERVER`:
//! moto, s3s-fs, garage; `scripts/test --server all` runs it on each): `cp` of 50 MiB and
//! 1 GiB files into the mount, `sort -o` in place, `cp --sparse=always`, `mv` of a directory,
//! `setfattr` and `rm -r` all succeed, and the server then holds exactly the bytes and
//! metadata written — checked through the S3 API, not through the mount.

mod common;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{server, sh, Mount};
use s3mount::s3::ObjectStore;
use s3mount::Storage;

const MIB: u64 = 1024 * 1024;
/// The large file of the issue.
const GIB: u64 = 1024 * MIB;
/// Bytes compared at a time when two files are too large to hold in memory.
const COMPARE_CHUNK: usize = 8 * 1024 * 1024;

/// `len` random bytes in a new local file (from /dev/urandom: quick even for a GiB).
fn random_file(dir: &Path, name: &str, len: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    sh(&format!("head -c {len} /dev/urandom > {}", path.display()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    path
}

/// Does `a` hold exactly the bytes of the file `b`? (Chunk by chunk: they may be a GiB each,
/// and `a` may be an object's body as it streams in.)
fn same_bytes(a: &mut impl Read, b: &Path) -> bool {
    let mut fb = std::fs::File::open(b).unwrap();
    let (mut ba, mut bb) = (vec![0u8; COMPARE_CHUNK], vec![0u8; COMPARE_CHUNK]);
    loop {
        let n = read_full(a, &mut ba);
        let m = read_full(&mut fb, &mut bb);
        if n != m || ba[..n] != bb[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// The object `key`, read through the S3 API, is the file `want` (compared as its body
/// streams in: no second copy on disk); and its `x-amz-meta-mode` is the mode the mount shows
/// (the metadata a new file is written with).
fn assert_stored(storage: &Storage, bucket: &str, mount: &Mount, key: &str, want: &Path) {
    let mut got = storage
        .get_object(&common::obj(bucket, key), None, None)
        .unwrap_or_else(|e| panic!("GET {key} through the S3 API: {e}"));
    assert_eq!(
        got.total_size,
        std::fs::metadata(want).unwrap().len(),
        "{key}: size"
    );
    assert!(
        same_bytes(&mut got.body, want),
        "{key}: other bytes on the server"
    );
    let shown = std::fs::metadata(mount.join(key)).unwrap();
    assert_eq!(
        got.info.metadata.get("mode"),
        Some(shown.mode().to_string().as_str()),
        "{key}: the mode written"
    );
}

/// `cp src` to `key` in the mount, checked on the server.
fn cp_checked(len: u64, key: &str) {
    let bucket = server().fresh_bucket(key);
    let storage = server().storage_in(&bucket);
    let mount = Mount::new(server(), &bucket);
    let dir = tempfile::tempdir().unwrap();
    let src = random_file(dir.path(), "src", len);
    sh(&format!(
        "cp {} {}",
        src.display(),
        mount.join(key).display()
    ));
    assert_stored(&storage, &bucket, &mount, key, &src);
}

#[test]
fn cp_of_50_mib() {
    cp_checked(50 * MIB, "fifty.bin");
}

#[test]
fn cp_of_1_gib() {
    cp_checked(GIB, "one-gib.bin");
}

#[test]
fn sort_o_in_place() {
    let bucket = server().fresh_bucket("sort");
    let storage = server().storage_in(&bucket);
    let mount = Mount::new(server(), &bucket);
    let dir = tempfile::tempdir().unwrap();
    // About 17 MB of lines: above the multipart threshold, as in the issue.
    let src = dir.path().join("lines");
    sh(&format!(
        "od -An -tu4 -w4 -v < /dev/urandom | head -n 1500000 > {}",
        src.display()
    ));
    let want = dir.path().join("sorted");
    sh(&format!(
        "LC_ALL=C sort {} > {}",
        src.display(),
        want.display()
    ));
    let f = mount.join("lines.txt");
    sh(&format!("cp {} {}", src.display(), f.display()));
    sh(&format!("LC_ALL=C sort -o {} {}", f.display(), f.display()));
    assert!(std::fs::metadata(&want).unwrap().len() > 16 * MIB);
    assert_stored(&storage, &bucket, &mount, "lines.txt", &want);
}

#[test]
fn cp_sparse_always() {
    let bucket = server().fresh_bucket("sparse");
    let storage = server().storage_in(&bucket);
    let mount = Mount::new(server(), &bucket);
    let dir = tempfile::tempdir().unwrap();
    // 30 MiB, mostly holes: data at the start, in the middle and a hole at the end.
    let src = dir.path().join("sparse");
    sh(&format!(
        "truncate -s 30M {p} && head -c 1000000 /dev/urandom | dd of={p} conv=notrunc status=none && head -c 3000000 /dev/urandom | dd of={p} bs=1M seek=12 conv=notrunc status=none",
        p = src.display()
    ));
    sh(&format!(
        "cp --sparse=always {} {}",
        src.display(),
        mount.join("sparse.bin").display()
    ));
    assert_stored(&storage, &bucket, &mount, "sparse.bin", &src);
}

#[test]
fn mv_of_a_directory() {
    let bucket = server().fresh_bucket("mvdir");
    let storage = server().storage_in(&bucket);
    let mount = Mount::new(server(), &bucket);
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    let files = [
        ("a.txt", 1000),
        ("sub/b.bin", 300 * 1024),
        ("sub/deeper/c.bin", 20 * MIB + 1),
    ];
    for (name, len) in files {
        let p = tree.join(name);
        let (parent, file) = (p.parent().unwrap(), p.file_name().unwrap());
        random_file(parent, file.to_str().unwrap(), len);
    }
    sh(&format!(
        "cp -r {} {}",
        tree.display(),
        mount.join("d").display()
    ));
    sh(&format!(
        "mv {} {}",
        mount.join("d").display(),
        mount.join("moved").display()
    ));
    for (name, _) in files {
        let key = format!("moved/{name}");
        assert_stored(&storage, &bucket, &mount, &key, &tree.join(name));
    }
    let (left, _) = storage.bucket(&bucket).list_all("d/", None).unwrap();
    assert!(left.is_empty(), "sources left: {left:?}");
}

#[test]
fn setfattr_is_on_the_server() {
    let bucket = server().fresh_bucket("setfattr");
    let storage = server().storage_in(&bucket);
    let mount = Mount::new(server(), &bucket);
    let dir = tempfile::tempdir().unwrap();
    for (name, len) in [("small.bin", 4096), ("large.bin", 20 * MIB + 7)] {
        let src = random_file(dir.path(), name, len);
        let f = mount.join(name);
        sh(&format!("cp {} {}", src.display(), f.display()));
        sh(&format!(
            "setfattr -n user.x-amz-meta-color -v blue {} && setfattr -n user.x-amz-meta-shape -v round {}",
            f.display(),
            f.display()
        ));
        let info = storage.head_object(&common::obj(&bucket, name)).unwrap();
        assert_eq!(info.metadata.get("color"), Some("blue"), "{name}");
        assert_eq!(info.metadata.get("shape"), Some("round"), "{name}");
        // The content is untouched, and the rest of the metadata kept.
        assert_stored(&storage, &bucket, &mount, name, &src);
        let shown = sh(&format!(
            "getfattr -n user.x-amz-meta-color --only-values {}",
            f.display()
        ));
        assert_eq!(shown.stdout, b"blue");
    }
}

#[test]
fn rm_r_empties_the_prefix() {
    let bucket = server().fresh_bucket("rmr");
    let storage = server().storage_in(&bucket);
    let mount = Mount::new(server(), &bucket);
    let d = mount.join("d");
    sh(&format!(
        "mkdir -p {d}/x/y && for i in 1 2 3; do echo $i > {d}/f$i && echo $i > {d}/x/g$i && echo $i > {d}/x/y/h$i; done",
        d = d.display()
    ));
    let (before, _) = storage.bucket(&bucket).list_all("d/", None).unwrap();
    assert!(before.len() >= 9, "{before:?}");
    sh(&format!("rm -r {}", d.display()));
    let (left, _) = storage.bucket(&bucket).list_all("", None).unwrap();
    assert!(left.is_empty(), "left on the server: {left:?}");
    assert!(!d.exists());
}
