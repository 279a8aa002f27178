//! The mount driven by std::fs and real tools (`cp`, `mv`, `rm`, `truncate`, `python3`, `df`),
//! every result also checked through the S3 API (GET, ranged GET, download, listing), so a
//! test can only pass if the bytes really are on the server.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use common::{random_bytes, server, sh, skip_on, Mount, ServerLimit};
use s3mount::s3::ObjectStore;
use s3mount::s3::{PutOptions, RequestBody};
use s3mount::Storage;

const MIB: usize = 1024 * 1024;

use common::obj;

/// PUT `data` as `key` through the API.
fn put(storage: &Storage, bucket: &str, key: &str, data: &[u8]) {
    storage
        .bucket(bucket)
        .put(key, RequestBody::Bytes(data), &PutOptions::default())
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
}

/// The whole object through a GET, `None` if it does not exist.
fn get(storage: &Storage, bucket: &str, key: &str) -> Option<Vec<u8>> {
    match storage.get_object(&obj(bucket, key), None, None) {
        Ok(mut g) => {
            let mut buf = Vec::new();
            g.body.read_to_end(&mut buf).expect("read GET body");
            assert_eq!(buf.len() as u64, g.content_length, "{key}: body length");
            Some(buf)
        }
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("GET {key}: {e}"),
    }
}

/// The object, which must exist.
fn must_get(storage: &Storage, bucket: &str, key: &str) -> Vec<u8> {
    get(storage, bucket, key).unwrap_or_else(|| panic!("{key} is not on the server"))
}

/// Every key under `prefix` (no delimiter).
fn keys(storage: &Storage, bucket: &str, prefix: &str) -> Vec<String> {
    let (objects, _) = storage
        .bucket(bucket)
        .list_all(prefix, None)
        .unwrap_or_else(|e| panic!("LIST {prefix}: {e}"));
    objects.into_iter().map(|o| o.key).collect()
}

/// Names in a directory of the mount, sorted.
fn ls(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn errno_of(r: std::io::Result<impl std::fmt::Debug>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("no errno in {e}")),
    }
}

fn write_local(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write local file");
    p
}

/// Shell-quote a path.
fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

#[test]
fn cp_in_and_out_is_byte_exact_for_0b_1kib_30mib() {
    let server = server();
    let bucket = server.fresh_bucket("cp");
    let storage = server.storage_in(&bucket);
    let m = Mount::new(server, &bucket);
    let local = tempfile::tempdir().unwrap();
    for (name, len, seed) in [
        ("empty", 0usize, 1u64),
        ("one-k.bin", 1024, 2),
        ("big.bin", 30 * MIB, 3),
    ] {
        let data = random_bytes(len, seed);
        let src = write_local(local.path(), name, &data);
        sh(&format!("cp {} {}", q(&src), q(&m.join(name))));

        // On the server: a whole GET, a ranged read, a download.
        assert_eq!(must_get(&storage, &bucket, name), data, "{name}: GET");
        let head = storage.head_object(&obj(&bucket, name)).unwrap();
        assert_eq!(head.size, len as u64, "{name}: HEAD size");
        if len > 0 {
            let off = len / 3;
            let mut buf = vec![0u8; (len - off).min(4096)];
            let (n, _) = storage
                .bucket(&bucket)
                .read_range(name, off as u64, &mut buf, None)
                .unwrap();
            assert_eq!(n, buf.len());
            assert_eq!(&buf[..], &data[off..off + n], "{name}: ranged read");
        }
        let mut dl = tempfile::tempfile().unwrap();
        storage.bucket(&bucket).download(name, &mut dl).unwrap();
        let mut got = Vec::new();
        dl.seek(SeekFrom::Start(0)).unwrap();
        dl.read_to_end(&mut got).unwrap();
        assert!(got == data, "{name}: download differs");

        // Out through the mount.
        let out = local.path().join(format!("{name}.out"));
        sh(&format!("cp {} {}", q(&m.join(name)), q(&out)));
        assert!(
            std::fs::read(&out).unwrap() == data,
            "{name}: cp out differs"
        );
        assert_eq!(std::fs::metadata(m.join(name)).unwrap().len(), len as u64);
    }
    // A fresh mount (no cache) reads the same bytes back.
    drop(m);
    let m = Mount::new(server, &bucket);
    let big = std::fs::read(m.join("big.bin")).unwrap();
    assert!(
        big == random_bytes(30 * MIB, 3),
        "big.bin read on a fresh mount"
    );
    assert_eq!(std::fs::read(m.join("empty")).unwrap(), b"");
}

#[test]
fn overwrite_existing_object_replaces_its_bytes() {
    let server = server();
    let bucket = server.fresh_bucket("overwrite");
    let storage = server.storage_in(&bucket);
    put(&storage, &bucket, "f.txt", &random_bytes(5000, 9));
    let m = Mount::new(server, &bucket);
    assert_eq!(
        std::fs::read(m.join("f.txt")).unwrap(),
        random_bytes(5000, 9)
    );
    let local = tempfile::tempdir().unwrap();
    let src = write_local(local.path(), "new", b"shorter new content");
    sh(&format!("cp {} {}", q(&src), q(&m.join("f.txt"))));
    assert_eq!(must_get(&storage, &bucket, "f.txt"), b"shorter new content");
    assert_eq!(
        std::fs::read(m.join("f.txt")).unwrap(),
        b"shorter new content"
    );
    // std::fs::write (O_TRUNC) over it again.
    std::fs::write(m.join("f.txt"), b"third").unwrap();
    assert_eq!(must_get(&storage, &bucket, "f.txt"), b"third");
    assert_eq!(keys(&storage, &bucket, ""), vec!["f.txt"]);
}

#[test]
fn append_with_shell_redirection() {
    let server = server();
    let bucket = server.fresh_bucket("append");
    let storage = server.storage_in(&bucket);
    put(&storage, &bucket, "log.txt", b"line1\n");
    let m = Mount::new(server, &bucket);
    let p = q(&m.join("log.txt"));
    sh(&format!("printf 'line2\\n' >> {p}"));
    assert_eq!(must_get(&storage, &bucket, "log.txt"), b"line1\nline2\n");
    sh(&format!("printf x >> {p}"));
    assert_eq!(must_get(&storage, &bucket, "log.txt"), b"line1\nline2\nx");
    // Appending to a name that does not exist creates it.
    let n = q(&m.join("new.txt"));
    sh(&format!("printf a >> {n} && printf b >> {n}"));
    assert_eq!(must_get(&storage, &bucket, "new.txt"), b"ab");
    assert_eq!(
        std::fs::read(m.join("log.txt")).unwrap(),
        b"line1\nline2\nx"
    );
}

/// Each `>>` opens the file right after the previous one closed it, while the kernel may still
/// be delivering the previous handle's (asynchronous) RELEASE: an open racing with the last
/// release once got an OpenFile already dropped from the map, and its writes failed (EBADF).
#[test]
fn many_appends_in_a_row() {
    let server = server();
    let bucket = server.fresh_bucket("appendloop");
    let storage = server.storage_in(&bucket);
    let m = Mount::new(server, &bucket);
    let p = q(&m.join("loop.txt"));
    sh(&format!(
        "for i in $(seq 1 60); do printf \"$i,\" >> {p}; done"
    ));
    let want: String = (1..=60).map(|i| format!("{i},")).collect();
    assert_eq!(
        String::from_utf8(must_get(&storage, &bucket, "loop.txt")).unwrap(),
        want
    );
    assert_eq!(std::fs::read_to_string(m.join("loop.txt")).unwrap(), want);
}

#[test]
fn truncate_shrinks_and_grows() {
    let server = server();
    let bucket = server.fresh_bucket("truncate");
    let storage = server.storage_in(&bucket);
    let data = random_bytes(100_000, 4);
    put(&storage, &bucket, "t.bin", &data);
    let m = Mount::new(server, &bucket);
    let p = q(&m.join("t.bin"));
    sh(&format!("truncate -s 1000 {p}"));
    assert_eq!(must_get(&storage, &bucket, "t.bin"), &data[..1000]);
    assert_eq!(std::fs::metadata(m.join("t.bin")).unwrap().len(), 1000);
    sh(&format!("truncate -s 5000 {p}"));
    let mut want = data[..1000].to_vec();
    want.resize(5000, 0);
    assert_eq!(must_get(&storage, &bucket, "t.bin"), want);
    assert_eq!(std::fs::read(m.join("t.bin")).unwrap(), want);
    sh(&format!("truncate -s 0 {p}"));
    assert_eq!(must_get(&storage, &bucket, "t.bin"), b"");
    assert_eq!(std::fs::metadata(m.join("t.bin")).unwrap().len(), 0);
    // Past S3's largest object (5 TiB): EFBIG, as a disk past its largest file.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.join("t.bin"))
        .unwrap();
    let err = f.set_len(999_999_999_999_999).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
    drop(f);
    assert_eq!(std::fs::metadata(m.join("t.bin")).unwrap().len(), 0);
}

#[test]
fn a_truncate_while_the_file_is_open_shows_in_ls_and_reads_at_once() {
    // Another process holds the file open, so the change waits in the open file for its last
    // close; `ls -l` meanwhile lists the object as the first close uploaded it (13 bytes):
    // neither the listing nor a lookup may take the size back (the unit tests
    // `a_listing_shows_the_size_of_a_file_still_open_*` pin the mount's side; here the
    // kernel's). The holder is a process of its own: any `close` of a copy of a descriptor
    // held here (a `fork` by this or another test, closed again at its `exec`) would upload.
    let server = server();
    let bucket = server.fresh_bucket("truncopen");
    let storage = server.storage_in(&bucket);
    let m = Mount::new(server, &bucket);
    let data = random_bytes(13, 5);
    let b = m.join("b");
    std::fs::write(&b, &data).unwrap();
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys; f = open(sys.argv[1], 'rb'); print('open', flush=True); sys.stdin.read()",
        ])
        .arg(&b)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "open");
    // truncate(2) on the path (`truncate -s` opens the file and its close uploads).
    common::python(
        "import os, sys; os.truncate(sys.argv[1], 20)",
        &[b.as_os_str()],
    );
    assert_eq!(
        must_get(&storage, &bucket, "b"),
        data,
        "kept for the last close"
    );
    let mut want = data.clone();
    want.resize(20, 0);
    let out = sh(&format!("ls -l {}", q(m.path())));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(" 20 "), "{listed}");
    assert_eq!(std::fs::metadata(&b).unwrap().len(), 20);
    // (This read's close uploads the change.)
    assert_eq!(std::fs::read(&b).unwrap(), want);
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    // The release comes after `close` returns.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&storage, &bucket, "b").as_deref() != Some(&want[..]) {
        assert!(
            std::time::Instant::now() < deadline,
            "not uploaded 10 s after the last close"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read(&b).unwrap(), want);
}

#[test]
fn python_seek_and_write_in_the_middle() {
    let server = server();
    let bucket = server.fresh_bucket("rplus");
    let storage = server.storage_in(&bucket);
    let data = random_bytes(3 * MIB, 5);
    put(&storage, &bucket, "d/mid.bin", &data);
    let m = Mount::new(server, &bucket);
    let p = m.join("d/mid.bin");
    sh(&format!(
        "python3 -c \"import sys\nwith open(sys.argv[1], 'r+b') as f:\n    f.seek(1500000)\n    f.write(b'HELLO-WORLD')\n\" {}",
        q(&p)
    ));
    let mut want = data.clone();
    want[1_500_000..1_500_011].copy_from_slice(b"HELLO-WORLD");
    assert!(
        must_get(&storage, &bucket, "d/mid.bin") == want,
        "server bytes"
    );
    assert!(std::fs::read(&p).unwrap() == want, "mount bytes");
    // Text mode 'r+' as in the brief, on a small file.
    put(&storage, &bucket, "small.txt", b"0123456789");
    sh(&format!(
        "python3 -c \"import sys\nwith open(sys.argv[1], 'r+') as f:\n    f.seek(3)\n    f.write('abc')\n\" {}",
        q(&m.join("small.txt"))
    ));
    assert_eq!(must_get(&storage, &bucket, "small.txt"), b"012abc6789");
}

#[test]
fn o_excl_create_of_an_existing_name_is_eexist() {
    let server = server();
    let bucket = server.fresh_bucket("excl");
    let storage = server.storage_in(&bucket);
    put(&storage, &bucket, "there", b"server");
    let m = Mount::new(server, &bucket);
    let excl = |p: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
    };
    assert_eq!(errno_of(excl(&m.join("there"))), libc::EEXIST);
    assert_eq!(must_get(&storage, &bucket, "there"), b"server");
    // A new name works, then is EEXIST itself.
    let mut f = excl(&m.join("fresh")).expect("O_EXCL create of a new name");
    f.write_all(b"mine").unwrap();
    drop(f);
    assert_eq!(must_get(&storage, &bucket, "fresh"), b"mine");
    assert_eq!(errno_of(excl(&m.join("fresh"))), libc::EEXIST);
    // A directory name too.
    std::fs::create_dir(m.join("dir")).unwrap();
    assert_eq!(errno_of(excl(&m.join("dir"))), libc::EEXIST);
}

#[test]
fn mv_files_within_across_and_onto_existing() {
    let server = server();
    let bucket = server.fresh_bucket("mvfile");
    let storage = server.storage_in(&bucket);
    put(&storage, &bucket, "a/one", b"one");
    put(&storage, &bucket, "a/two", b"two");
    put(&storage, &bucket, "b/target", b"old target");
    put(&storage, &bucket, "a/three", b"three");
    let m = Mount::new(server, &bucket);

    sh(&format!(
        "mv {} {}",
        q(&m.join("a/one")),
        q(&m.join("a/uno"))
    ));
    assert_eq!(get(&storage, &bucket, "a/one"), None);
    assert_eq!(must_get(&storage, &bucket, "a/uno"), b"one");

    sh(&format!("mv {} {}", q(&m.join("a/two")), q(&m.join("b/"))));
    assert_eq!(get(&storage, &bucket, "a/two"), None);
    assert_eq!(must_get(&storage, &bucket, "b/two"), b"two");

    sh(&format!(
        "mv {} {}",
        q(&m.join("a/three")),
        q(&m.join("b/target"))
    ));
    assert_eq!(get(&storage, &bucket, "a/three"), None);
    assert_eq!(must_get(&storage, &bucket, "b/target"), b"three");

    assert_eq!(ls(&m.join("a")), vec!["uno"]);
    assert_eq!(ls(&m.join("b")), vec!["target", "two"]);
    assert_eq!(std::fs::read(m.join("b/target")).unwrap(), b"three");
    assert!(!m.join("a/three").exists());
    assert_eq!(
        keys(&storage, &bucket, ""),
        vec!["a/uno", "b/target", "b/two"]
    );
}

#[test]
fn mv_of_a_30mib_file() {
    let server = server();
    let bucket = server.fresh_bucket("mvbig");
    let storage = server.storage_in(&bucket);
    let data = random_bytes(30 * MIB, 6);
    let m = Mount::new(server, &bucket);
    std::fs::write(m.join("big"), &data).unwrap();
    std::fs::create_dir(m.join("dst")).unwrap();
    // A reader open across the move keeps reading the right bytes.
    let mut reader = std::fs::File::open(m.join("big")).unwrap();
    let mut head = vec![0u8; 4096];
    reader.read_exact(&mut head).unwrap();
    assert_eq!(&head[..], &data[..4096]);
    sh(&format!(
        "mv {} {}",
        q(&m.join("big")),
        q(&m.join("dst/moved"))
    ));
    reader.seek(SeekFrom::Start(20 * MIB as u64)).unwrap();
    let mut mid = vec![0u8; 100_000];
    reader
        .read_exact(&mut mid)
        .expect("read through a handle opened before the move");
    assert!(
        mid[..] == data[20 * MIB..20 * MIB + 100_000],
        "bytes after the move"
    );
    drop(reader);
    assert_eq!(get(&storage, &bucket, "big"), None);
    assert!(
        must_get(&storage, &bucket, "dst/moved") == data,
        "moved bytes"
    );
    // Read back at once (attributes still fresh): the renamed file's reads are pinned to the
    // copy's ETag, not the multipart source's (that failed with EIO once).
    assert!(std::fs::read(m.join("dst/moved")).unwrap() == data);
    assert!(!m.join("big").exists());
    // And modified in place after the move.
    sh(&format!("printf tail >> {}", q(&m.join("dst/moved"))));
    let got = must_get(&storage, &bucket, "dst/moved");
    assert_eq!(got.len(), data.len() + 4);
    assert!(got[..data.len()] == data[..] && &got[data.len()..] == b"tail");
}

#[test]
fn mv_of_a_directory_of_50_files() {
    let server = server();
    let bucket = server.fresh_bucket("mvdir");
    let storage = server.storage_in(&bucket);
    let m = Mount::new(server, &bucket);
    std::fs::create_dir_all(m.join("src/sub")).unwrap();
    for i in 0..50 {
        let rel = if i % 5 == 0 {
            format!("src/sub/f{i:02}")
        } else {
            format!("src/f{i:02}")
        };
        std::fs::write(m.join(&rel), random_bytes(100 + i, i as u64)).unwrap();
    }
    sh(&format!("mv {} {}", q(&m.join("src")), q(&m.join("dst"))));
    assert_eq!(
        keys(&storage, &bucket, "src"),
        Vec::<String>::new(),
        "left under the old prefix"
    );
    let moved = keys(&storage, &bucket, "dst/");
    let files: Vec<&String> = moved.iter().filter(|k| !k.ends_with('/')).collect();
    assert_eq!(files.len(), 50, "{moved:?}");
    for i in 0..50 {
        let rel = if i % 5 == 0 {
            format!("dst/sub/f{i:02}")
        } else {
            format!("dst/f{i:02}")
        };
        assert_eq!(
            must_get(&storage, &bucket, &rel),
            random_bytes(100 + i, i as u64),
            "{rel}"
        );
        assert_eq!(
            std::fs::read(m.join(&rel)).unwrap(),
            random_bytes(100 + i, i as u64)
        );
    }
    assert!(!m.join("src").exists());
    assert_eq!(ls(m.path()), vec!["dst"]);
    assert_eq!(ls(&m.join("dst")).len(), 41); // 40 files + sub
    assert_eq!(ls(&m.join("dst/sub")).len(), 10);
}

#[test]
fn mv_no_clobber_leaves_both() {
    let server = server();
    let bucket = server.fresh_bucket("mvn");
    let storage = server.storage_in(&bucket);
    put(&storage, &bucket, "x", b"xx");
    put(&storage, &bucket, "y", b"yy");
    let m = Mount::new(server, &bucket);
    // GNU mv -n exits 0 (older) or 1 (coreutils >= 9.2 reports the skip); both are fine.
    let _ = std::process::Command::new("mv")
        .arg("-n")
        .arg(m.join("x"))
        .arg(m.join("y"))
        .status()
        .unwrap();
    assert_eq!(must_get(&storage, &bucket, "x"), b"xx");
    assert_eq!(must_get(&storage, &bucket, "y"), b"yy");
    assert_eq!(std::fs::read(m.join("x")).unwrap(), b"xx");
    assert_eq!(std::fs::read(m.join("y")).unwrap(), b"yy");
}

#[test]
fn rm_rm_r_rmdir_and_mkdir_p() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("rm");
    let storage = server.storage_in(&bucket);
    put(&storage, &bucket, "lone", b"1");
    for k in ["tree/a", "tree/b/c", "tree/b/d/e", "tree/f/"] {
        put(&storage, &bucket, k, b"");
    }
    put(&storage, &bucket, "full/x", b"x");
    let m = Mount::new(server, &bucket);

    sh(&format!("rm {}", q(&m.join("lone"))));
    assert_eq!(get(&storage, &bucket, "lone"), None);
    assert!(!m.join("lone").exists());

    sh(&format!("rm -r {}", q(&m.join("tree"))));
    assert_eq!(keys(&storage, &bucket, "tree"), Vec::<String>::new());
    assert!(!m.join("tree").exists());

    assert_eq!(
        errno_of(std::fs::remove_dir(m.join("full"))),
        libc::ENOTEMPTY
    );
    assert_eq!(must_get(&storage, &bucket, "full/x"), b"x");

    sh(&format!("mkdir -p {}", q(&m.join("a/b/c"))));
    for k in ["a/", "a/b/", "a/b/c/"] {
        assert_eq!(must_get(&storage, &bucket, k), b"", "marker {k}");
    }
    assert!(m.join("a/b/c").is_dir());
    // rmdir of the empty leaf removes only its marker.
    std::fs::remove_dir(m.join("a/b/c")).unwrap();
    assert_eq!(keys(&storage, &bucket, "a"), vec!["a/", "a/b/"]);
    assert_eq!(ls(m.path()), vec!["a", "full"]);
}

#[test]
fn implicit_directories_show_up() {
    let server = server();
    let bucket = server.fresh_bucket("implicit");
    let storage = server.storage_in(&bucket);
    put(&storage, &bucket, "x/y/z.txt", b"zzz");
    let m = Mount::new(server, &bucket);
    assert_eq!(ls(m.path()), vec!["x"]);
    assert_eq!(ls(&m.join("x")), vec!["y"]);
    assert_eq!(ls(&m.join("x/y")), vec!["z.txt"]);
    assert!(m.join("x").is_dir() && m.join("x/y").is_dir());
    assert_eq!(std::fs::read(m.join("x/y/z.txt")).unwrap(), b"zzz");
    let out = sh(&format!("ls {}", q(&m.join("x"))));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "y");
    // A file created in an implicit directory lands under its prefix.
    std::fs::write(m.join("x/y/new"), b"n").unwrap();
    assert_eq!(must_get(&storage, &bucket, "x/y/new"), b"n");
}

#[test]
fn ls_of_2500_entries_is_complete() {
    let server = server();
    let bucket = server.fresh_bucket("ls2500");
    let storage = server.storage_in(&bucket);
    let n = 2500usize;
    let threads = 16;
    std::thread::scope(|s| {
        for t in 0..threads {
            let storage = storage.clone();
            let bucket = bucket.clone();
            s.spawn(move || {
                for i in (t..n).step_by(threads) {
                    put(&storage, &bucket, &format!("many/f{i:05}"), b"x");
                }
            });
        }
    });
    let m = Mount::new(server, &bucket);
    let names = ls(&m.join("many"));
    let want: Vec<String> = (0..n).map(|i| format!("f{i:05}")).collect();
    assert_eq!(names.len(), n);
    assert_eq!(names, want);
    let out = sh(&format!("ls -l {} | grep -c '^-'", q(&m.join("many"))));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), n.to_string());
}

#[test]
fn odd_names_work_both_ways() {
    if skip_on(ServerLimit::KeysAreFileNames) || skip_on(ServerLimit::ListingKeysNotEncoded) {
        return;
    }
    let longest = "n".repeat(255);
    let server = server();
    let bucket = server.fresh_bucket("names");
    let storage = server.storage_in(&bucket);
    let names = [
        "with space.txt",
        "ünïcødé-名前.txt",
        "a+b",
        "100%",
        "hash#tag",
        "q?uery&x=1",
        "emoji-😀",
        "back\\slash",
        "quote'\"",
        ".hidden",
        "...",
        // The longest name: 255 bytes.
        longest.as_str(),
    ];
    for (i, n) in names.iter().enumerate() {
        put(
            &storage,
            &bucket,
            &format!("srv/{n}"),
            format!("s{i}").as_bytes(),
        );
    }
    let m = Mount::new(server, &bucket);
    std::fs::create_dir(m.join("mnt dir+%#")).unwrap();
    for (i, n) in names.iter().enumerate() {
        std::fs::write(m.join(&format!("mnt dir+%#/{n}")), format!("m{i}")).unwrap();
    }
    // Through the mount → exact keys on the server.
    let mut want: BTreeSet<String> = names.iter().map(|n| format!("mnt dir+%#/{n}")).collect();
    want.insert("mnt dir+%#/".to_string());
    let got: BTreeSet<String> = keys(&storage, &bucket, "mnt dir").into_iter().collect();
    assert_eq!(got, want);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(
            must_get(&storage, &bucket, &format!("mnt dir+%#/{n}")),
            format!("m{i}").as_bytes()
        );
    }
    // On the server → in the mount.
    let mut sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    assert_eq!(ls(&m.join("srv")), sorted);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(
            std::fs::read(m.join(&format!("srv/{n}"))).unwrap(),
            format!("s{i}").as_bytes(),
            "{n}"
        );
    }
    assert_eq!(ls(&m.join("mnt dir+%#")), sorted);
}

#[test]
fn keys_that_cannot_be_names_are_hidden() {
    if skip_on(ServerLimit::KeysAreFileNames) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("badkeys");
    let storage = server.storage_in(&bucket);
    // Over the 1024 bytes a FUSE request carries (a name over 255 bytes is shown: posix.rs).
    let long = "L".repeat(1100);
    for k in [
        "d/a//b".to_string(),
        "d//lead".to_string(),
        "d/./x".to_string(),
        "d/../y".to_string(),
        "d/..".to_string(),
        format!("d/{long}"),
        format!("d/{long}/inner"),
        "d/good".to_string(),
        // Both a file `k` and a directory `k/...`.
        "d/k".to_string(),
        "d/k/inside".to_string(),
    ] {
        put(&storage, &bucket, &k, b"v");
    }
    let m = Mount::new(server, &bucket);
    assert_eq!(ls(&m.join("d")), vec!["a", "good", "k"]);
    // `d/a` is a directory (of `d/a//b`) whose only child has an empty name: empty listing.
    assert!(m.join("d/a").is_dir());
    assert_eq!(ls(&m.join("d/a")), Vec::<String>::new());
    assert!(m.join("d/k").is_dir(), "a directory shadows a file");
    assert_eq!(ls(&m.join("d/k")), vec!["inside"]);
    assert_eq!(std::fs::read(m.join("d/k/inside")).unwrap(), b"v");
    assert_eq!(std::fs::read(m.join("d/good")).unwrap(), b"v");
    // Looking the bad names up directly fails cleanly.
    assert!(std::fs::metadata(m.join("d").join(&long)).is_err());
    let out = sh(&format!("find {} | sort", q(m.path())));
    let found = String::from_utf8_lossy(&out.stdout);
    assert!(!found.contains(&long), "{found}");
    // The mount is still alive.
    std::fs::write(m.join("d/after"), b"ok").unwrap();
    assert_eq!(must_get(&storage, &bucket, "d/after"), b"ok");
    assert_eq!(ls(&m.join("d")), vec!["a", "after", "good", "k"]);
}

#[test]
fn changes_behind_the_mount_are_seen_after_the_ttl() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("behind");
    let storage = server.storage_in(&bucket);
    put(&storage, &bucket, "changed", b"version one");
    put(&storage, &bucket, "deleted", b"doomed");
    put(&storage, &bucket, "same-size", b"AAAAAAAA");
    put(&storage, &bucket, "olddir/f", b"f");
    let m = Mount::with_args(server, &bucket, &["--metadata-ttl", "1"]);
    assert_eq!(std::fs::read(m.join("changed")).unwrap(), b"version one");
    assert_eq!(std::fs::read(m.join("deleted")).unwrap(), b"doomed");
    assert_eq!(std::fs::read(m.join("same-size")).unwrap(), b"AAAAAAAA");
    assert_eq!(
        ls(m.path()),
        vec!["changed", "deleted", "olddir", "same-size"]
    );
    assert_eq!(ls(&m.join("olddir")), vec!["f"]);
    assert!(!m.join("created").exists());
    assert!(!m.join("newdir").exists());

    put(&storage, &bucket, "changed", b"version two, longer");
    storage.delete_object(&obj(&bucket, "deleted")).unwrap();
    put(&storage, &bucket, "created", b"new one");
    // Same size: only the ETag (and mtime) tell; the page cache must not serve the old bytes.
    put(&storage, &bucket, "same-size", b"BBBBBBBB");
    storage.delete_object(&obj(&bucket, "olddir/f")).unwrap();
    put(&storage, &bucket, "newdir/g", b"g");
    std::thread::sleep(Duration::from_millis(1600));

    assert_eq!(std::fs::read(m.join("same-size")).unwrap(), b"BBBBBBBB");
    assert!(
        !m.join("olddir").exists(),
        "a directory emptied behind the mount"
    );
    assert!(m.join("newdir").is_dir());
    assert_eq!(ls(&m.join("newdir")), vec!["g"]);

    assert_eq!(
        std::fs::read(m.join("changed")).unwrap(),
        b"version two, longer"
    );
    assert_eq!(
        std::fs::metadata(m.join("changed")).unwrap().len(),
        b"version two, longer".len() as u64
    );
    assert_eq!(errno_of(std::fs::metadata(m.join("deleted"))), libc::ENOENT);
    assert_eq!(errno_of(std::fs::read(m.join("deleted"))), libc::ENOENT);
    assert_eq!(std::fs::metadata(m.join("created")).unwrap().len(), 7);
    assert_eq!(std::fs::read(m.join("created")).unwrap(), b"new one");
    assert_eq!(
        ls(m.path()),
        vec!["changed", "created", "newdir", "same-size"]
    );
}

#[test]
fn a_file_held_open_does_not_pin_later_opens_to_a_version_replaced_behind_the_mount() {
    // A reader keeps the file open (a `tail`, a long `cat`) while another client replaces it:
    // an `open` after the TTL reads the new version, as when no handle is open, and the old
    // handle never reads the new version's bytes — not even through the kernel's page cache,
    // which its inode shares with the new handle.
    let server = server();
    let bucket = server.fresh_bucket("heldopen");
    let storage = server.storage_in(&bucket);
    let len = 100_000;
    put(&storage, &bucket, "f", &vec![b'1'; len]);
    let m = Mount::with_args(server, &bucket, &["--metadata-ttl", "1"]);
    let mut old = std::fs::File::open(m.join("f")).unwrap();
    let mut first = vec![0; 4096];
    old.read_exact(&mut first).unwrap();
    put(&storage, &bucket, "f", &vec![b'2'; len]);
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(std::fs::metadata(m.join("f")).unwrap().len(), len as u64);
    let new = std::fs::read(m.join("f")).unwrap();
    assert!(
        new == vec![b'2'; len],
        "the new version, read while the old is open"
    );
    assert!(std::fs::read(m.join("f")).unwrap() == new, "and again");
    let mut rest = Vec::new();
    match old.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.iter().all(|&b| b == b'1'),
            "the old handle read the new version's bytes after the old one's"
        ),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO)),
    }
    drop(old);
    assert!(std::fs::read(m.join("f")).unwrap() == new);
}

#[test]
fn cp_r_of_a_tree_in_and_out() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("cpr");
    let storage = server.storage_in(&bucket);
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("tree");
    let mut files = Vec::new();
    for (i, rel) in [
        "a.txt",
        "sub/b.bin",
        "sub/deeper/c",
        "sub/deeper/empty",
        "z z/y",
    ]
    .iter()
    .enumerate()
    {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let data = if rel.ends_with("empty") {
            Vec::new()
        } else {
            random_bytes(1000 * (i + 1) * (i + 1), 40 + i as u64)
        };
        std::fs::write(&p, &data).unwrap();
        files.push((rel.to_string(), data));
    }
    std::fs::create_dir_all(src.join("emptydir")).unwrap();
    let m = Mount::new(server, &bucket);
    sh(&format!("cp -r {} {}", q(&src), q(&m.join("copy"))));
    for (rel, data) in &files {
        assert_eq!(
            &must_get(&storage, &bucket, &format!("copy/{rel}")),
            data,
            "{rel}"
        );
    }
    assert_eq!(must_get(&storage, &bucket, "copy/emptydir/"), b"");
    let back = local.path().join("back");
    sh(&format!("cp -r {} {}", q(&m.join("copy")), q(&back)));
    sh(&format!("diff -r {} {}", q(&src), q(&back)));
}

#[test]
fn read_of_an_object_deleted_behind_an_open_handle_does_not_hang() {
    let server = server();
    let bucket = server.fresh_bucket("gone");
    let storage = server.storage_in(&bucket);
    let data = random_bytes(20 * MIB, 7);
    put(&storage, &bucket, "gone.bin", &data);
    let m = Mount::with_args(server, &bucket, &["--metadata-ttl", "1"]);
    let mut f = std::fs::File::open(m.join("gone.bin")).unwrap();
    let mut first = vec![0u8; 4096];
    f.read_exact(&mut first).unwrap();
    assert_eq!(&first[..], &data[..4096]);
    storage.delete_object(&obj(&bucket, "gone.bin")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let (tx, rx) = std::sync::mpsc::channel();
    let want = data.clone();
    std::thread::spawn(move || {
        // Far from what was read (and beyond any first prefetch window).
        f.seek(SeekFrom::Start(15 * MIB as u64)).unwrap();
        let mut buf = vec![0u8; 65536];
        let r = f.read_exact(&mut buf).map(|_| buf);
        let _ = tx.send(r.map(|b| b == want[15 * MIB..15 * MIB + 65536]));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(same)) => assert!(same, "read returned bytes that are not the old object's"),
        Ok(Err(e)) => assert!(e.raw_os_error().is_some(), "error without errno: {e}"),
        Err(_) => panic!("read of a deleted object hung; log:\n{}", m.log()),
    }
    // The mount still answers, and the name goes once the file is closed: an open file stays
    // listed, and the kernel sends its release after `close` has returned, so the reader's
    // close may still be on its way.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names = ls(m.path());
        if names.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still listed 10 s after its close: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn statfs_and_df_work() {
    let server = server();
    let bucket = server.fresh_bucket("df");
    let m = Mount::new(server, &bucket);
    let out = sh(&format!("df -P {}", q(m.path())));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).unwrap_or_else(|| panic!("df: {text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    let avail: u64 = cols[3].parse().unwrap_or_else(|_| panic!("df: {line}"));
    assert!(avail > 1 << 30, "df avail {avail} KiB: {line}");
    assert!(line.ends_with(&m.path().display().to_string()), "{line}");
    let out = sh(&format!("stat -f -c '%b %a %c %d %l' {}", q(m.path())));
    let f: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(f[0] > 0 && f[1] > 0 && f[2] > 0 && f[3] > 0, "{f:?}");
    assert!(f[4] >= 255, "name max {}", f[4]);
}

/// `st_blksize` is one FUSE request's worth (1 MiB): GNU `cp`, `cat` and stdio size their
/// reads and writes by it, so a copy into the mount sends 1 MiB writes, not 128 KiB ones.
#[test]
fn files_report_a_one_mib_preferred_io_size() {
    use std::os::unix::fs::MetadataExt;
    let server = server();
    let bucket = server.fresh_bucket("blksize");
    let m = Mount::new(server, &bucket);
    std::fs::write(m.join("f"), b"x").unwrap();
    std::fs::create_dir(m.join("d")).unwrap();
    for name in ["f", "d"] {
        assert_eq!(
            std::fs::metadata(m.join(name)).unwrap().blksize(),
            1 << 20,
            "{name}"
        );
    }
    let out = sh(&format!("stat -c %o {}", q(&m.join("f"))));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1048576");
}

/// O_EXCL when the mount still believes the name is free (a cached miss) but another client
/// created it meanwhile: the upload carries `If-None-Match: *`, so the other client's object is
/// never replaced; `close` reports the failure.
#[test]
fn o_excl_create_never_replaces_an_object_created_behind_the_mount() {
    if skip_on(ServerLimit::IgnoresIfNoneMatch) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("exclrace");
    let storage = server.storage_in(&bucket);
    let m = Mount::with_args(server, &bucket, &["--metadata-ttl", "30"]);
    assert!(std::fs::metadata(m.join("late")).is_err());
    put(&storage, &bucket, "late", b"theirs");
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.join("late"));
    match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "{e}"),
        Ok(mut f) => {
            let w = f.write_all(b"mine");
            let c = f.sync_all();
            drop(f);
            assert!(
                w.is_err() || c.is_err(),
                "O_EXCL create + write + fsync of an object created meanwhile succeeded"
            );
        }
    }
    assert_eq!(must_get(&storage, &bucket, "late"), b"theirs");
}

/// A file renamed while open for writing keeps its handle: later writes and the close land on
/// the new name; a file unlinked while open is never uploaded.
#[test]
fn rename_and_unlink_while_open_for_writing() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("openmv");
    let storage = server.storage_in(&bucket);
    let m = Mount::new(server, &bucket);
    std::fs::create_dir(m.join("d")).unwrap();
    let mut f = std::fs::File::create(m.join("tmp.part")).unwrap();
    f.write_all(b"first,").unwrap();
    std::fs::rename(m.join("tmp.part"), m.join("d/final")).unwrap();
    f.write_all(b"second").unwrap();
    drop(f);
    assert_eq!(get(&storage, &bucket, "tmp.part"), None);
    assert_eq!(must_get(&storage, &bucket, "d/final"), b"first,second");
    assert_eq!(std::fs::read(m.join("d/final")).unwrap(), b"first,second");

    let mut g = std::fs::File::create(m.join("scratch")).unwrap();
    g.write_all(b"never uploaded").unwrap();
    std::fs::remove_file(m.join("scratch")).unwrap();
    g.write_all(b" still writable").unwrap();
    drop(g);
    assert_eq!(get(&storage, &bucket, "scratch"), None);
    assert!(!m.join("scratch").exists());
    assert_eq!(keys(&storage, &bucket, ""), vec!["d/", "d/final"]);
}

/// With `--metadata-ttl 0` every lookup asks the server: the everyday operations still work
/// (a file being written is known from its open state, not from the server).
#[test]
fn everyday_operations_with_metadata_ttl_0() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("ttl0");
    let storage = server.storage_in(&bucket);
    let m = Mount::with_args(server, &bucket, &["--metadata-ttl", "0"]);
    sh(&format!("mkdir -p {}", q(&m.join("p/q"))));
    let mut f = std::fs::File::create(m.join("p/q/w")).unwrap();
    f.write_all(b"abc").unwrap();
    assert_eq!(std::fs::metadata(m.join("p/q/w")).unwrap().len(), 3);
    assert_eq!(ls(&m.join("p/q")), vec!["w"]);
    drop(f);
    assert_eq!(must_get(&storage, &bucket, "p/q/w"), b"abc");
    let p = q(&m.join("p/q/w"));
    sh(&format!("for i in 1 2 3 4 5; do printf $i >> {p}; done"));
    assert_eq!(must_get(&storage, &bucket, "p/q/w"), b"abc12345");
    sh(&format!("mv {p} {}", q(&m.join("p/moved"))));
    assert_eq!(std::fs::read(m.join("p/moved")).unwrap(), b"abc12345");
    sh(&format!("truncate -s 2 {}", q(&m.join("p/moved"))));
    assert_eq!(must_get(&storage, &bucket, "p/moved"), b"ab");
    sh(&format!("mv {} {}", q(&m.join("p")), q(&m.join("r"))));
    assert_eq!(ls(&m.join("r")), vec!["moved", "q"]);
    sh(&format!("rm -r {}", q(&m.join("r"))));
    assert_eq!(keys(&storage, &bucket, ""), Vec::<String>::new());
    assert_eq!(ls(m.path()), Vec::<String>::new());
}

/// A sequential reader whose object is replaced on the server mid-read: the read-ahead is
/// pinned to the ETag seen at open, so the reader gets an error (412 → EIO) — never a mix of
/// the old and the new bytes — and the next open reads the new version whole.
#[test]
fn prefetch_meets_a_changed_object() {
    let server = server();
    let bucket = server.fresh_bucket("prefetch412");
    let storage = server.storage_in(&bucket);
    // Larger than the largest read-ahead window (64 MiB), so some of it is fetched after the
    // change whatever the kernel's read sizes.
    let old = random_bytes(80 * 1024 * 1024, 1);
    let new = random_bytes(80 * 1024 * 1024, 2);
    put(&storage, &bucket, "big.bin", &old);
    let m = Mount::with_args(server, &bucket, &["--metadata-ttl", "0"]);
    let mut f = std::fs::File::open(m.join("big.bin")).unwrap();
    // Read the first MiB: the prefetcher now has parts of the old version in flight.
    let mut head = vec![0u8; 1024 * 1024];
    f.read_exact(&mut head).unwrap();
    assert_eq!(head, old[..head.len()]);
    put(&storage, &bucket, "big.bin", &new);
    // Reading on: every byte returned is the old version's, and before the end the read
    // fails (the parts not yet fetched meet If-Match with the old ETag).
    let mut got = head;
    let mut buf = vec![0u8; 1024 * 1024];
    let failed = loop {
        match f.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
                break true;
            }
        }
    };
    assert!(got[..] == old[..got.len()], "bytes of two versions mixed");
    assert!(
        failed,
        "read {} bytes of a replaced object without an error",
        got.len()
    );
    drop(f);
    // A new open sees the new version, whole.
    let mut again = Vec::new();
    std::fs::File::open(m.join("big.bin"))
        .unwrap()
        .read_to_end(&mut again)
        .unwrap();
    assert!(again == new, "the next open must read the new version");
}
