//! What common file operations send on the wire, counted by the proxy of `common/proxy.rs`, on
//! a real mount: `cp` inside the mount is a server-side copy (no byte of the file through the
//! mount), a new file costs its lookup and one PUT, `rm -r` one DELETE per file, `ls -l` no
//! extended-attribute call per entry; and a lookup by name finds another client's new object
//! at once. `copy_file_range` of anything but a whole object into an empty file falls back to
//! the kernel's read and write, byte-exact.

mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use common::proxy::{Proxy, Seen};
use common::{obj, random_bytes, server, sh, Mount, Server};
use s3mount::s3::ObjectStore;
use s3mount::s3::{Metadata, PutOptions, RequestBody};

const MIB: usize = 1024 * 1024;

fn via(proxy: &Proxy) -> Server {
    server().via(proxy.endpoint())
}

fn q(p: &std::path::Path) -> String {
    format!("'{}'", p.display())
}

/// PUT through the API (not through the proxy).
fn put(bucket: &str, key: &str, data: &[u8], opts: &PutOptions) {
    server()
        .storage_in(bucket)
        .bucket(bucket)
        .put(key, RequestBody::Bytes(data), opts)
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
}

/// The object through the API: bytes, metadata, Content-Type.
fn get(bucket: &str, key: &str) -> (Vec<u8>, Metadata, Option<String>) {
    let st = server().storage_in(bucket);
    let mut g = st
        .get_object(&obj(bucket, key), None, None)
        .unwrap_or_else(|e| panic!("GET {key}: {e}"));
    let mut data = Vec::new();
    g.body.read_to_end(&mut data).unwrap();
    let ct = g.info.content_type().map(str::to_string);
    (data, g.info.metadata, ct)
}

/// Requests seen for `key` (path `/bucket/key`, any query), by method.
fn to_key<'a>(seen: &'a [Seen], bucket: &str, key: &str) -> Vec<&'a Seen> {
    let path = format!("/{bucket}/{key}");
    seen.iter()
        .filter(|s| s.target.split('?').next() == Some(path.as_str()))
        .collect()
}

fn count(seen: &[&Seen], method: &str) -> usize {
    seen.iter().filter(|s| s.method == method).count()
}

#[test]
fn cp_inside_the_mount_copies_on_the_server_with_the_targets_own_metadata() {
    let bucket = server().fresh_bucket("cp-inside");
    let data = random_bytes(5 * MIB + 123, 1);
    let mut meta = Metadata::new();
    meta.insert("color", "red".to_string());
    put(
        &bucket,
        "dir/src.txt",
        &data,
        &PutOptions {
            metadata: meta,
            content_headers: vec![("content-type".into(), "text/plain".into())],
            ..PutOptions::default()
        },
    );
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    let src = mount.join("dir/src.txt");
    let dst = mount.join("dir/copy.html");
    sh(&format!("cp {} {}", q(&src), q(&dst)));

    let seen = proxy.seen();
    let to_dst = to_key(&seen, &bucket, "dir/copy.html");
    assert_eq!(
        copy_objects_to(&seen, &bucket, "dir/copy.html"),
        1,
        "one CopyObject; log:\n{}",
        mount.log()
    );
    assert_eq!(
        count(&to_dst, "PUT"),
        1,
        "no upload of the bytes: {to_dst:?}"
    );
    assert_eq!(
        count(&to_key(&seen, &bucket, "dir/src.txt"), "GET"),
        0,
        "no byte of the source through the mount"
    );
    let (got, metadata, ct) = get(&bucket, "dir/copy.html");
    assert!(got == data, "the copy is byte-exact");
    assert_eq!(get(&bucket, "dir/src.txt").0.len(), data.len());
    assert_eq!(metadata.get("color"), None, "not the source's metadata");
    let mode: u32 = metadata
        .get("mode")
        .expect("the target's mode, as a create writes it")
        .parse()
        .unwrap();
    assert_eq!(mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(ct.as_deref(), Some("text/html"), "a type from its own name");
    // Through the mount: the same size and bytes.
    assert_eq!(std::fs::metadata(&dst).unwrap().size(), data.len() as u64);
    assert!(std::fs::read(&dst).unwrap() == data);
}

/// `copy_file_range(2)` of `len` bytes from `src` at `off_in` to `dst` at `off_out`, looping
/// over short counts as `cp` does; panics on an error (the kernel falls back to read and write
/// when the mount answers EOPNOTSUPP, so the caller never sees it).
fn copy_range(src: &std::fs::File, off_in: u64, dst: &std::fs::File, off_out: u64, len: usize) {
    let (mut off_in, mut off_out) = (off_in as libc::loff_t, off_out as libc::loff_t);
    let mut left = len;
    while left > 0 {
        // SAFETY: both descriptors are open for the call; the offsets are ours.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                left,
                0,
            )
        };
        assert!(
            n > 0,
            "copy_file_range: {}",
            std::io::Error::last_os_error()
        );
        left -= n as usize;
    }
}

fn copy_objects_to(seen: &[Seen], bucket: &str, key: &str) -> usize {
    to_key(seen, bucket, key)
        .iter()
        .filter(|s| s.method == "PUT" && s.header("x-amz-copy-source").is_some())
        .count()
}

#[test]
fn copy_file_range_of_part_of_a_file_falls_back_to_read_and_write() {
    let bucket = server().fresh_bucket("cfr-partial");
    let data = random_bytes(3 * MIB + 77, 7);
    put(&bucket, "src.bin", &data, &PutOptions::default());
    put(&bucket, "has-content.bin", b"head:", &PutOptions::default());
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    let src = std::fs::File::open(mount.join("src.bin")).unwrap();

    // A middle range into a new file: not a whole object, so the kernel copies the bytes.
    let dst = std::fs::File::create(mount.join("middle.bin")).unwrap();
    copy_range(&src, 1000, &dst, 0, MIB);
    drop(dst);
    // The whole source after the content of an existing file.
    let dst = std::fs::OpenOptions::new()
        .write(true)
        .open(mount.join("has-content.bin"))
        .unwrap();
    copy_range(&src, 0, &dst, 5, data.len());
    drop(dst);
    // A copy from offset 0 that stops before the source's end: the ranges recorded are
    // fetched at close, and the target is that prefix.
    let dst = std::fs::File::create(mount.join("prefix.bin")).unwrap();
    copy_range(&src, 0, &dst, 0, MIB + 3);
    drop(dst);

    // The mount was asked and declined (EOPNOTSUPP, logged at debug): the kernel's fallback,
    // not a kernel that never asked, made these copies.
    assert!(
        mount.log().contains("copy_file_range: "),
        "the mount saw no copy_file_range; log:\n{}",
        mount.log()
    );
    let seen = proxy.seen();
    for key in ["middle.bin", "has-content.bin", "prefix.bin"] {
        assert_eq!(
            copy_objects_to(&seen, &bucket, key),
            0,
            "{key}: not a server-side copy; log:\n{}",
            mount.log()
        );
    }
    assert!(
        get(&bucket, "middle.bin").0 == data[1000..1000 + MIB],
        "middle"
    );
    let mut expected = b"head:".to_vec();
    expected.extend_from_slice(&data);
    assert!(get(&bucket, "has-content.bin").0 == expected, "appended");
    assert!(get(&bucket, "prefix.bin").0 == data[..MIB + 3], "prefix");
    assert!(get(&bucket, "src.bin").0 == data, "the source untouched");
    // And through the mount.
    assert!(std::fs::read(mount.join("prefix.bin")).unwrap() == data[..MIB + 3]);
}

#[test]
fn a_new_file_is_its_lookup_and_one_put_and_rm_one_delete() {
    const FILES: usize = 20;
    let bucket = server().fresh_bucket("round-trips");
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    let dir = mount.join("small");
    std::fs::create_dir(&dir).unwrap();
    let before = proxy.seen().len();
    for i in 0..FILES {
        std::fs::write(dir.join(format!("f{i:02}")), random_bytes(1024, i as u64)).unwrap();
    }
    // The requests about the files (the directory itself may be looked at again once its
    // attributes expire).
    let seen: Vec<String> = proxy.seen()[before..]
        .iter()
        .map(|s| format!("{} {}", s.method, s.target))
        .filter(|s| s.contains("/small/f") || s.contains("prefix=small%2Ff"))
        .collect();
    let methods = |m: &str| seen.iter().filter(|s| s.starts_with(m)).count();
    // Each name is asked of the server, even though the new directory's listing is fresh
    // (another client may have made it): one LIST of the name, which shows a file and a
    // directory of that name alike, since the listing makes it probably new; then PUT at
    // close.
    assert_eq!(methods("HEAD "), 0, "{seen:#?}");
    assert_eq!(
        methods("GET "),
        FILES,
        "the LISTs of the lookups: {seen:#?}"
    );
    assert!(
        seen.iter()
            .filter(|s| s.starts_with("GET "))
            .all(|s| s.contains("prefix=small%2Ff") && !s.contains("prefix=small%2Ff00%2F")),
        "a LIST of the name itself, not of name/: {seen:#?}"
    );
    assert_eq!(methods("PUT "), FILES, "{seen:#?}");
    assert_eq!(seen.len(), 2 * FILES, "{seen:#?}");

    let before = proxy.seen().len();
    sh(&format!("rm -r {}", q(&dir)));
    let seen: Vec<String> = proxy.seen()[before..]
        .iter()
        .map(|s| format!("{} {}", s.method, s.target))
        .collect();
    let deletes = seen.iter().filter(|s| s.starts_with("DELETE ")).count();
    assert_eq!(deletes, FILES + 1, "the files and the marker: {seen:#?}");
    // The directory itself may be looked up again once its attributes expire (a loaded
    // machine takes longer than the TTL between the creates and the rm): only the files count.
    assert_eq!(
        seen.iter()
            .filter(|s| s.starts_with("HEAD ") && s.contains("/small/f"))
            .count(),
        0,
        "no HEAD per file: {seen:#?}"
    );
    let listed = server()
        .storage_in(&bucket)
        .bucket(&bucket)
        .list_all("small/", None)
        .unwrap()
        .0;
    assert!(listed.is_empty(), "{listed:?}");
}

#[test]
fn ls_l_asks_no_extended_attribute_per_entry() {
    const FILES: usize = 40;
    let bucket = server().fresh_bucket("ls-xattr");
    for i in 0..FILES {
        put(&bucket, &format!("d/f{i:02}"), b"x", &PutOptions::default());
    }
    let mount = Mount::new(server(), &bucket);
    let calls = |log: &str| log.lines().filter(|l| l.contains("getxattr: ")).count();
    let before = calls(&mount.log());
    for _ in 0..2 {
        let out = sh(&format!("ls -l {}", q(&mount.join("d"))));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            FILES + 1
        );
    }
    // GNU ls asks security.selinux and system.posix_acl_access once per ls and file system
    // (ENOTSUP), not once per entry (ENODATA).
    let asked = calls(&mount.log()) - before;
    assert!(
        asked <= 2 * 2,
        "{asked} getxattr calls for two ls -l of {FILES} entries; log:\n{}",
        mount.log()
    );
}

/// A symlink's target is read once per version of the link: the kernel asks `readlink` for
/// every link of each `ls -l` and at every path resolution through one, which was a GET each
/// time (`ls -l` of a directory of links, a venv's `bin/python`).
#[test]
fn a_symlink_is_read_once_whatever_the_number_of_ls_and_opens() {
    const LINKS: usize = 10;
    let bucket = server().fresh_bucket("links");
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    let dir = mount.join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("target"), b"content").unwrap();
    for i in 0..LINKS {
        std::os::unix::fs::symlink("target", dir.join(format!("l{i}"))).unwrap();
    }
    let before = proxy.seen().len();
    for _ in 0..3 {
        let out = sh(&format!("ls -l {}", q(&dir)));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.ends_with(" -> target"))
                .count(),
            LINKS
        );
        for i in 0..LINKS {
            assert_eq!(
                std::fs::read(dir.join(format!("l{i}"))).unwrap(),
                b"content"
            );
        }
    }
    let seen = &proxy.seen()[before..];
    let gets: usize = (0..LINKS)
        .map(|i| count(&to_key(seen, &bucket, &format!("d/l{i}")), "GET"))
        .sum();
    assert_eq!(
        gets, LINKS,
        "one GET per link for three ls -l and three opens each"
    );
}

/// `find` looks at names and types: in directories of files too big to be symlinks or special
/// files it costs one LIST per directory and no HEAD per file; `ls -l` after it still shows the
/// mode every file carries, from one round of parallel HEADs at its first `stat`.
#[test]
fn find_heads_no_file_that_can_only_be_regular_and_ls_l_shows_their_modes() {
    const DIRS: usize = 3;
    const FILES: usize = 8;
    let bucket = server().fresh_bucket("find-heads");
    let private = PutOptions {
        metadata: [("mode", "33152")].into_iter().collect(), // 0100600
        ..PutOptions::default()
    };
    for d in 0..DIRS {
        for f in 0..FILES {
            put(&bucket, &format!("t/d{d}/f{f}"), &[b'x'; 5000], &private);
        }
        // One small file per directory, which could be a symlink: HEADed by the listing.
        put(&bucket, &format!("t/d{d}/small"), b"x", &private);
    }
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::new(&via(&proxy), &bucket);
    let out = sh(&format!("find {} -type f", q(&mount.join("t"))));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        DIRS * (FILES + 1)
    );
    let seen = proxy.seen();
    let heads_of = |seen: &[Seen], d: usize, name: &str| {
        count(&to_key(seen, &bucket, &format!("t/d{d}/{name}")), "HEAD")
    };
    for d in 0..DIRS {
        for f in 0..FILES {
            assert_eq!(
                heads_of(&seen, d, &format!("f{f}")),
                0,
                "find HEADed d{d}/f{f}"
            );
        }
        assert_eq!(heads_of(&seen, d, "small"), 1, "d{d}/small");
    }
    let out = sh(&format!("ls -l {}", q(&mount.join("t/d1"))));
    let listed = String::from_utf8_lossy(&out.stdout);
    let modes: Vec<&str> = listed
        .lines()
        .skip(1)
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(modes, vec!["-rw-------"; FILES + 1], "{listed}");
    let seen = proxy.seen();
    for f in 0..FILES {
        assert_eq!(
            heads_of(&seen, 1, &format!("f{f}")),
            1,
            "ls -l HEADs d1/f{f} once"
        );
        assert_eq!(heads_of(&seen, 0, &format!("f{f}")), 0, "nothing in d0");
    }
}

#[test]
fn another_clients_new_object_is_found_by_name_at_once() {
    let bucket = server().fresh_bucket("visible-at-once");
    // Listings and attributes trusted for a minute: only the lookup by name asks.
    let mount = Mount::with_args(server(), &bucket, &["--metadata-ttl", "60"]);
    let dir = mount.join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("mine"), b"m").unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    assert!(!dir.join("theirs").exists());
    put(&bucket, "d/theirs", b"their bytes", &PutOptions::default());
    put(&bucket, "d/sub/deep", b"x", &PutOptions::default());
    assert_eq!(std::fs::read(dir.join("theirs")).unwrap(), b"their bytes");
    assert!(std::fs::metadata(dir.join("sub")).unwrap().is_dir());
    assert_eq!(std::fs::read(dir.join("sub/deep")).unwrap(), b"x");
    // A name this mount removed stays removed for the TTL, even if another client puts it
    // back meanwhile (the documented exception).
    std::fs::remove_file(dir.join("mine")).unwrap();
    put(&bucket, "d/mine", b"back", &PutOptions::default());
    assert!(!dir.join("mine").exists());
}
