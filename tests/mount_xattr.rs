//! Metadata through a real mount: extended attributes (`user.x-amz-meta-*` = S3 user metadata),
//! mode/owner/mtime kept as `x-amz-meta-mode/uid/gid/mtime`, s3fs-style symlinks, and a
//! read-only mount. Every result is checked through the mount (the real tools: `getfattr`,
//! `setfattr`, `cp`, `stat`, `ls`, or `libc` where an errno matters) AND through the S3 API
//! (HEAD / GET with a separate client), and, where it matters, after a remount.
//!
//! Where moto differs from AWS S3 the test says so (DESIGN.md §8); nothing here depends on
//! `x-amz-copy-source-if-match`, which moto ignores.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::proxy::Proxy;
use common::{server, sh, skip_on, Mount, ServerLimit};
use s3mount::s3::ObjectStore;
use s3mount::s3::{ObjectInfo, Operation, PutOptions, RequestBody, S3Request};
use s3mount::{Metadata, Storage};

/// `x-amz-meta-mode` of a regular file with permissions 0644, decimal as s3fs writes it.
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFDIR: u32 = 0o040000;

use common::obj;

fn head(storage: &Storage, bucket: &str, key: &str) -> ObjectInfo {
    storage
        .head_object(&obj(bucket, key))
        .unwrap_or_else(|e| panic!("HEAD {key}: {e}"))
}

fn get_all(storage: &Storage, bucket: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut f = tempfile::tempfile().unwrap();
    storage
        .bucket(bucket)
        .download(key, &mut f)
        .unwrap_or_else(|e| panic!("GET {key}: {e}"));
    use std::io::{Read, Seek};
    f.rewind().unwrap();
    f.read_to_end(&mut out).unwrap();
    out
}

/// PUT an object through the API with metadata and a Content-Type.
fn seed(storage: &Storage, bucket: &str, key: &str, body: &[u8], meta: &[(&str, &str)], ct: &str) {
    let opts = PutOptions {
        metadata: meta.iter().copied().collect(),
        content_headers: vec![("content-type".to_string(), ct.to_string())],
        ..PutOptions::default()
    };
    storage
        .bucket(bucket)
        .put(key, RequestBody::Bytes(body), &opts)
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().copied().collect()
}

/// Run a command without asserting success.
fn run(cmd: &str) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash for {cmd:?}: {e}"))
}

/// `m` without the times every metadata change through the mount carries (`ctime`, and the
/// `mtime` the file shows).
fn without_times(m: &Metadata) -> Metadata {
    let mut m = m.clone();
    m.remove("ctime");
    m.remove("mtime");
    m
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// `getfattr --only-values -n name path`, or None if it fails.
fn getfattr(path: &Path, name: &str) -> Option<String> {
    let out = run(&format!(
        "getfattr --absolute-names --only-values -n {name} {}",
        q(path)
    ));
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).expect("UTF-8 value"))
}

/// `getfattr -d -m - path`: the `name="value"` lines, sorted.
fn getfattr_dump(path: &Path) -> Vec<String> {
    let out = sh(&format!("getfattr --absolute-names -d -m - {}", q(path)));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

use common::set_xattr;

/// `getxattr(2)`; the errno on failure.
fn get_xattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let p = cpath(path);
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// How many PUT requests (uploads and self-copies, not multipart parts, whose targets have a
/// query) for `bucket/key` went through `proxy`; `key` "" also counts PUTs of the bucket itself.
/// Counted at a proxy in front of the mount, not in a server's log, so it works on every server.
fn puts_seen(proxy: &Proxy, bucket: &str, key: &str) -> usize {
    requests_seen(proxy, "PUT", bucket, key)
}

/// How many `method` requests for `bucket/key` (no query) went through `proxy`; `key` "" also
/// counts those of the bucket itself.
fn requests_seen(proxy: &Proxy, method: &str, bucket: &str, key: &str) -> usize {
    let object = format!("/{bucket}/{key}");
    let bucket_itself = format!("/{bucket}");
    proxy
        .seen()
        .iter()
        .filter(|s| {
            s.method == method
                && (s.target == object || (key.is_empty() && s.target == bucket_itself))
        })
        .count()
}

/// `listxattr(2)`: the names; the errno on failure.
fn list_xattr(path: &Path) -> Result<Vec<String>, i32> {
    let p = cpath(path);
    let mut buf = vec![0u8; 4096];
    // SAFETY: a valid NUL-terminated path and a buffer of the given length.
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(r as usize);
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

fn mode_of(info: &ObjectInfo) -> Option<u32> {
    info.metadata.get("mode").map(|m| {
        m.parse()
            .unwrap_or_else(|_| panic!("x-amz-meta-mode {m:?} is not decimal"))
    })
}

#[test]
fn xattr_get_set_remove_and_overwrite_keep_metadata() {
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-basic");
    let st = srv.storage_in(&bucket);
    let body = b"hello metadata\n";
    seed(
        &st,
        &bucket,
        "f.txt",
        body,
        &[("x-amz-meta-color", "red"), ("x-amz-meta-owner", "ops")],
        "text/plain",
    );
    let m = Mount::new(srv, &bucket);
    let f = m.join("f.txt");

    assert_eq!(
        getfattr(&f, "user.x-amz-meta-color").as_deref(),
        Some("red")
    );
    assert_eq!(
        getfattr(&f, "user.x-amz-meta-owner").as_deref(),
        Some("ops")
    );
    // Names are matched case-insensitively (S3 lower-cases them).
    assert_eq!(
        getfattr(&f, "user.x-amz-meta-COLOR").as_deref(),
        Some("red")
    );
    assert_eq!(getfattr(&f, "user.x-amz-meta-missing"), None);
    // -d lists exactly the metadata (and nothing else with -m -).
    assert_eq!(
        getfattr_dump(&f),
        vec![
            "user.x-amz-meta-color=\"red\"".to_string(),
            "user.x-amz-meta-owner=\"ops\"".to_string()
        ]
    );

    // Set: the server has the new value, the rest unchanged, content and Content-Type intact.
    sh(&format!(
        "setfattr -n user.x-amz-meta-color -v blue {}",
        q(&f)
    ));
    let h = head(&st, &bucket, "f.txt");
    assert_eq!(
        without_times(&h.metadata),
        meta(&[("x-amz-meta-color", "blue"), ("x-amz-meta-owner", "ops")])
    );
    assert!(
        h.metadata.get("ctime").is_some(),
        "a change carries its ctime"
    );
    assert_eq!(h.content_type(), Some("text/plain"));
    assert_eq!(h.size, body.len() as u64);
    assert_eq!(get_all(&st, &bucket, "f.txt"), body);
    assert_eq!(
        getfattr(&f, "user.x-amz-meta-color").as_deref(),
        Some("blue")
    );

    // A new name.
    sh(&format!("setfattr -n user.x-amz-meta-stage -v 2 {}", q(&f)));
    assert_eq!(head(&st, &bucket, "f.txt").metadata.get("stage"), Some("2"));

    // Remove.
    sh(&format!("setfattr -x user.x-amz-meta-color {}", q(&f)));
    let h = head(&st, &bucket, "f.txt");
    assert_eq!(
        without_times(&h.metadata),
        meta(&[("x-amz-meta-owner", "ops"), ("x-amz-meta-stage", "2")])
    );
    assert_eq!(h.content_type(), Some("text/plain"));
    assert_eq!(get_all(&st, &bucket, "f.txt"), body);
    assert_eq!(getfattr(&f, "user.x-amz-meta-color"), None);
    assert_eq!(
        get_xattr(&f, "user.x-amz-meta-color"),
        Err(libc::ENODATA),
        "a removed name is ENODATA"
    );
    // Removing a missing name fails (ENODATA) and changes nothing.
    let out = run(&format!("setfattr -x user.x-amz-meta-color {}", q(&f)));
    assert!(!out.status.success());

    // Overwrite the content through the mount (truncating `>` and `cp`): metadata stays.
    sh(&format!("echo 'new content' > {}", q(&f)));
    let h = head(&st, &bucket, "f.txt");
    assert_eq!(get_all(&st, &bucket, "f.txt"), b"new content\n");
    assert_eq!(h.metadata.get("owner"), Some("ops"));
    assert_eq!(h.metadata.get("stage"), Some("2"));
    assert_eq!(h.content_type(), Some("text/plain"));
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src.bin");
    std::fs::write(&src, b"copied over\n").unwrap();
    sh(&format!("cp {} {}", q(&src), q(&f)));
    let h = head(&st, &bucket, "f.txt");
    assert_eq!(get_all(&st, &bucket, "f.txt"), b"copied over\n");
    assert_eq!(h.metadata.get("owner"), Some("ops"));
    assert_eq!(h.metadata.get("stage"), Some("2"));
    assert_eq!(h.content_type(), Some("text/plain"));
    // Appending keeps it too.
    sh(&format!("echo more >> {}", q(&f)));
    let h = head(&st, &bucket, "f.txt");
    assert_eq!(get_all(&st, &bucket, "f.txt"), b"copied over\nmore\n");
    assert_eq!(h.metadata.get("owner"), Some("ops"));
    assert_eq!(getfattr(&f, "user.x-amz-meta-stage").as_deref(), Some("2"));

    // After a remount the attributes come from the server alone.
    m.unmount();
    let m = Mount::new(srv, &bucket);
    let dump: Vec<String> = getfattr_dump(&m.join("f.txt"))
        .into_iter()
        .filter(|l| {
            !l.starts_with("user.x-amz-meta-ctime=") && !l.starts_with("user.x-amz-meta-mtime=")
        })
        .collect();
    assert_eq!(
        dump,
        vec![
            "user.x-amz-meta-owner=\"ops\"".to_string(),
            "user.x-amz-meta-stage=\"2\"".to_string()
        ]
    );
}

#[test]
fn xattr_non_ascii_value_is_rfc2047_on_the_wire() {
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-utf8");
    let st = srv.storage_in(&bucket);
    seed(&st, &bucket, "u.txt", b"x", &[], "text/plain");
    let m = Mount::new(srv, &bucket);
    let f = m.join("u.txt");
    let value = "é日本";
    sh(&format!(
        "setfattr -n user.x-amz-meta-title -v '{value}' {}",
        q(&f)
    ));
    assert_eq!(
        getfattr(&f, "user.x-amz-meta-title").as_deref(),
        Some(value)
    );
    let h = head(&st, &bucket, "u.txt");
    assert_eq!(h.metadata.get("title"), Some(value));
    assert_eq!(h.content_type(), Some("text/plain"));
    // The raw header as stored: RFC 2047 base64, ASCII only.
    let resp = st
        .client()
        .execute(&S3Request::new(Operation::HeadObject, &bucket, "u.txt"))
        .unwrap();
    let raw = resp.header("x-amz-meta-title").unwrap().to_string();
    assert!(
        raw.starts_with("=?UTF-8?B?") && raw.ends_with("?=") && raw.is_ascii(),
        "{raw}"
    );
    // And a value seeded RFC 2047-encoded by another tool reads back decoded.
    m.unmount();
    let m = Mount::new(srv, &bucket);
    assert_eq!(
        getfattr(&m.join("u.txt"), "user.x-amz-meta-title").as_deref(),
        Some(value)
    );
}

#[test]
fn xattr_limits_flags_and_other_namespaces() {
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-limits");
    let st = srv.storage_in(&bucket);
    seed(
        &st,
        &bucket,
        "l.txt",
        b"limits",
        &[("x-amz-meta-color", "red")],
        "text/plain",
    );
    let m = Mount::new(srv, &bucket);
    let f = m.join("l.txt");
    let before = head(&st, &bucket, "l.txt");

    // Over 2 KB in one value: E2BIG, through the tool and the call.
    let big = "v".repeat(2100);
    let out = run(&format!(
        "setfattr -n user.x-amz-meta-big -v {big} {}",
        q(&f)
    ));
    assert!(!out.status.success(), "setfattr of 2100 bytes succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Argument list too long"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        set_xattr(&f, "user.x-amz-meta-big", big.as_bytes(), 0),
        Err(libc::E2BIG)
    );
    // Over 2 KB in total: each value fits, the sum does not.
    set_xattr(&f, "user.x-amz-meta-a", "a".repeat(1500).as_bytes(), 0).unwrap();
    assert_eq!(
        set_xattr(&f, "user.x-amz-meta-b", "b".repeat(600).as_bytes(), 0),
        Err(libc::E2BIG)
    );
    let h = head(&st, &bucket, "l.txt");
    assert_eq!(h.metadata.get("a").map(str::len), Some(1500));
    assert_eq!(h.metadata.get("b"), None);
    assert_eq!(h.metadata.get("big"), None);
    sh(&format!("setfattr -x user.x-amz-meta-a {}", q(&f)));
    assert_eq!(
        without_times(&head(&st, &bucket, "l.txt").metadata),
        without_times(&before.metadata)
    );

    // XATTR_CREATE on an existing name: EEXIST; XATTR_REPLACE on a missing one: ENODATA.
    assert_eq!(
        set_xattr(&f, "user.x-amz-meta-color", b"green", libc::XATTR_CREATE),
        Err(libc::EEXIST)
    );
    assert_eq!(
        set_xattr(&f, "user.x-amz-meta-shape", b"round", libc::XATTR_REPLACE),
        Err(libc::ENODATA)
    );
    assert_eq!(
        without_times(&head(&st, &bucket, "l.txt").metadata),
        without_times(&before.metadata)
    );
    // ... and the allowed cases work.
    set_xattr(&f, "user.x-amz-meta-color", b"green", libc::XATTR_REPLACE).unwrap();
    set_xattr(&f, "user.x-amz-meta-shape", b"round", libc::XATTR_CREATE).unwrap();
    assert_eq!(
        without_times(&head(&st, &bucket, "l.txt").metadata),
        meta(&[("x-amz-meta-color", "green"), ("x-amz-meta-shape", "round")])
    );

    // Other names are kept as s3fs keeps them, in `x-amz-meta-xattr` (see
    // `names_s3fs_keeps_in_one_entry_read_and_written_both_ways`); a name s3fs could not read
    // back is not stored: ENOTSUP. Gone with its last name, the entry leaves the rest as it was.
    sh(&format!("setfattr -n user.other -v x {}", q(&f)));
    set_xattr(&f, "trusted.x", b"y", 0).unwrap();
    assert_eq!(getfattr(&f, "user.other").as_deref(), Some("x"));
    assert_eq!(get_xattr(&f, "trusted.x"), Ok(b"y".to_vec()));
    assert!(head(&st, &bucket, "l.txt").metadata.get("xattr").is_some());
    assert_eq!(set_xattr(&f, "user.a,b", b"x", 0), Err(libc::EOPNOTSUPP));
    sh(&format!(
        "setfattr -x user.other {} && setfattr -x trusted.x {0}",
        q(&f)
    ));
    let out = run(&format!("getfattr -n trusted.x {}", q(&f)));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such attribute"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get_xattr(&f, "user.other"), Err(libc::ENODATA));
    // The namespaces the mount does not support at all (SELinux labels, POSIX ACLs): ENOTSUP
    // on get too, so GNU ls -l stops asking (see `round_trips.rs` `ls_l_asks_no_extended_attribute_per_entry`).
    assert_eq!(get_xattr(&f, "security.selinux"), Err(libc::EOPNOTSUPP));
    assert_eq!(
        get_xattr(&f, "system.posix_acl_access"),
        Err(libc::EOPNOTSUPP)
    );
    // A bad metadata name (not an HTTP token) is refused, not sent.
    assert!(set_xattr(&f, "user.x-amz-meta-a b", b"x", 0).is_err());
    let h = head(&st, &bucket, "l.txt");
    assert_eq!(
        without_times(&h.metadata),
        meta(&[("x-amz-meta-color", "green"), ("x-amz-meta-shape", "round")])
    );
    assert_eq!(h.content_type(), Some("text/plain"));
    assert_eq!(get_all(&st, &bucket, "l.txt"), b"limits");
}

/// Names other than `user.x-amz-meta-*` in s3fs's `x-amz-meta-xattr`: what s3fs wrote is read,
/// what the mount writes s3fs would read, and `cp --preserve=xattr` of such a name from a local
/// disk carries it in the first upload.
#[test]
fn names_s3fs_keeps_in_one_entry_read_and_written_both_ways() {
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-s3fs");
    let st = srv.storage_in(&bucket);
    // {"key":"value"}, as s3fs's own tests write it from outside.
    seed(
        &st,
        &bucket,
        "from-s3fs.txt",
        b"s3fs wrote me",
        &[("x-amz-meta-xattr", "%7B%22key%22%3A%22dmFsdWU%3D%22%7D")],
        "text/plain",
    );
    let proxy = Proxy::start(&srv.endpoint);
    let m = Mount::new(&srv.via(proxy.endpoint()), &bucket);
    let f = m.join("from-s3fs.txt");
    assert_eq!(get_xattr(&f, "key"), Ok(b"value".to_vec()));
    let names = list_xattr(&f).unwrap();
    assert!(names.iter().any(|n| n == "key"), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "user.x-amz-meta-xattr"),
        "{names:?}"
    );
    // Written through the mount: one entry, each name base64'd, content untouched.
    sh(&format!(
        "setfattr -n user.mime_type -v text/x-log {0} && setfattr -x key {0}",
        q(&f)
    ));
    let h = head(&st, &bucket, "from-s3fs.txt");
    assert_eq!(
        h.metadata.get("xattr"),
        Some("%7B%22user.mime_type%22%3A%22dGV4dC94LWxvZw%3D%3D%22%7D")
    );
    assert_eq!(get_all(&st, &bucket, "from-s3fs.txt"), b"s3fs wrote me");
    assert_eq!(h.content_type(), Some("text/plain"));
    let dump = getfattr_dump(&f);
    assert!(
        dump.contains(&"user.mime_type=\"text/x-log\"".to_string()),
        "getfattr -d: {dump:?}"
    );
    assert!(!dump.iter().any(|l| l.starts_with("key=")), "{dump:?}");

    // cp --preserve=xattr from a local disk: in the first upload.
    let local = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = local.path().join("src.c");
    std::fs::write(&src, b"int main;\n").unwrap();
    sh(&format!(
        "setfattr -n user.mime_type -v text/x-c {}",
        q(&src)
    ));
    sh(&format!(
        "cp --preserve=xattr {} {}",
        q(&src),
        q(&m.join("copy.c"))
    ));
    assert_eq!(puts_seen(&proxy, &bucket, "copy.c"), 1, "one upload");
    assert_eq!(
        getfattr(&m.join("copy.c"), "user.mime_type").as_deref(),
        Some("text/x-c")
    );
    assert_eq!(
        head(&st, &bucket, "copy.c").metadata.get("xattr"),
        Some("%7B%22user.mime_type%22%3A%22dGV4dC94LWM%3D%22%7D")
    );
}

#[test]
fn xattr_on_directories_with_and_without_markers() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-dirs");
    let st = srv.storage_in(&bucket);
    // An implicit directory: a key below it, no marker.
    seed(&st, &bucket, "imp/inner.txt", b"inner", &[], "text/plain");
    let m = Mount::new(srv, &bucket);

    std::fs::create_dir(m.join("d")).unwrap();
    sh(&format!(
        "setfattr -n user.x-amz-meta-team -v core {}",
        q(&m.join("d"))
    ));
    let h = head(&st, &bucket, "d/");
    assert_eq!(h.metadata.get("team"), Some("core"));
    assert_eq!(h.size, 0);
    assert_eq!(
        getfattr(&m.join("d"), "user.x-amz-meta-team").as_deref(),
        Some("core")
    );

    assert!(m.join("imp").is_dir());
    assert!(
        st.head_object(&obj(&bucket, "imp/")).is_err(),
        "no marker yet"
    );
    assert_eq!(getfattr_dump(&m.join("imp")), Vec::<String>::new());
    sh(&format!(
        "setfattr -n user.x-amz-meta-kind -v implicit {}",
        q(&m.join("imp"))
    ));
    let h = head(&st, &bucket, "imp/");
    assert_eq!(h.metadata.get("kind"), Some("implicit"));
    assert_eq!(h.size, 0);
    assert_eq!(get_all(&st, &bucket, "imp/inner.txt"), b"inner");
    assert_eq!(
        getfattr(&m.join("imp"), "user.x-amz-meta-kind").as_deref(),
        Some("implicit")
    );
    // Still one directory with its child; the marker is not a child.
    let names: Vec<String> = std::fs::read_dir(m.join("imp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["inner.txt".to_string()]);

    // Removing it keeps the marker (the directory stays a directory).
    sh(&format!(
        "setfattr -x user.x-amz-meta-kind {}",
        q(&m.join("imp"))
    ));
    assert_eq!(head(&st, &bucket, "imp/").metadata.get("kind"), None);

    m.unmount();
    let m = Mount::new(srv, &bucket);
    assert_eq!(
        getfattr(&m.join("d"), "user.x-amz-meta-team").as_deref(),
        Some("core")
    );
    assert!(m.join("d").is_dir());
}

#[test]
fn xattr_on_a_file_open_for_writing_goes_into_its_single_upload() {
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-open");
    let st = srv.storage_in(&bucket);
    let proxy = Proxy::start(&srv.endpoint);
    let m = Mount::new(&srv.via(proxy.endpoint()), &bucket);
    let f = m.join("w.dat");
    let script = format!(
        r#"
import errno, os
fd = os.open({path:?}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"written while open\n")
os.setxattr(fd, "user.x-amz-meta-state", b"draft")
os.setxattr(fd, "user.x-amz-meta-state", b"final")
os.setxattr(fd, "user.x-amz-meta-tmp", b"1")
os.removexattr(fd, "user.x-amz-meta-tmp")
assert os.getxattr(fd, "user.x-amz-meta-state") == b"final"
try:
    os.setxattr(fd, "user.x-amz-meta-state", b"x", os.XATTR_CREATE)
    raise SystemExit("XATTR_CREATE on an existing pending name succeeded")
except FileExistsError:
    pass
try:
    os.setxattr(fd, "user.x-amz-meta-big", b"v" * 2100)
    raise SystemExit("2100 bytes of metadata accepted")
except OSError as e:
    assert e.errno == errno.E2BIG, e
os.write(fd, b"more\n")
os.close(fd)
"#,
        path = f.display().to_string()
    );
    common::python(&script, &[]);
    assert_eq!(
        puts_seen(&proxy, &bucket, "w.dat"),
        1,
        "content and metadata in one upload"
    );
    let h = head(&st, &bucket, "w.dat");
    assert_eq!(h.metadata.get("state"), Some("final"));
    assert_eq!(h.metadata.get("tmp"), None);
    assert_eq!(
        get_all(&st, &bucket, "w.dat"),
        b"written while open\nmore\n"
    );
    assert_eq!(
        getfattr(&f, "user.x-amz-meta-state").as_deref(),
        Some("final")
    );

    // Overwriting an existing object: its metadata and Content-Type plus the change, in one PUT.
    seed(
        &st,
        &bucket,
        "old.dat",
        b"old",
        &[("x-amz-meta-color", "red")],
        "image/png",
    );
    let puts_before = puts_seen(&proxy, &bucket, "old.dat");
    let script = format!(
        "import os\nfd = os.open({:?}, os.O_WRONLY | os.O_TRUNC)\nos.write(fd, b'new')\nos.setxattr(fd, 'user.x-amz-meta-size', b'L')\nos.close(fd)\n",
        m.join("old.dat").display().to_string()
    );
    common::python(&script, &[]);
    assert_eq!(puts_seen(&proxy, &bucket, "old.dat"), puts_before + 1);
    let h = head(&st, &bucket, "old.dat");
    // With the times every upload records.
    let mut m = h.metadata.clone();
    assert!(
        m.remove("mtime").is_some() && m.remove("ctime").is_some(),
        "{m:?}"
    );
    assert_eq!(
        m,
        meta(&[("x-amz-meta-color", "red"), ("x-amz-meta-size", "L")])
    );
    assert_eq!(h.content_type(), Some("image/png"));
    assert_eq!(get_all(&st, &bucket, "old.dat"), b"new");
}

#[test]
fn a_reader_keeps_reading_across_a_metadata_change_of_a_multipart_object() {
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-reader");
    let st = srv.storage_in(&bucket);
    let m = Mount::new(srv, &bucket);
    let local = tempfile::tempdir().unwrap();
    let data = common::random_bytes(17 * 1024 * 1024, 7);
    std::fs::write(local.path().join("big.bin"), &data).unwrap();
    sh(&format!(
        "cp {} {}",
        q(&local.path().join("big.bin")),
        q(&m.join("big.bin"))
    ));
    let etag = head(&st, &bucket, "big.bin").etag.unwrap();
    assert!(etag.contains('-'), "a multipart upload: {etag}");
    let script = format!(
        "import os, sys\nf = open({p:?}, 'rb')\nfirst = f.read(1 << 20)\nos.setxattr({p:?}, 'user.x-amz-meta-seen', b'yes')\nrest = f.read()\nsys.stdout.buffer.write(first + rest)\n",
        p = m.join("big.bin").display().to_string()
    );
    let out = common::python(&script, &[]);
    assert!(out.stdout == data, "the reader got other bytes");
    let h = head(&st, &bucket, "big.bin");
    assert_eq!(h.metadata.get("seen"), Some("yes"));
    eprintln!("ETag before {etag}, after the self-copy {:?}", h.etag);
    assert!(get_all(&st, &bucket, "big.bin") == data);
}

#[test]
fn cp_preserving_xattrs_from_local_disk_sets_them_in_the_first_upload() {
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-cp");
    let st = srv.storage_in(&bucket);
    let proxy = Proxy::start(&srv.endpoint);
    let m = Mount::new(&srv.via(proxy.endpoint()), &bucket);
    // A temp dir on the local disk (not tmpfs, whose user xattrs may be off).
    let local = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = local.path().join("src.txt");
    std::fs::write(&src, b"local content\n").unwrap();
    let tagged = run(&format!(
        "setfattr -n user.x-amz-meta-origin -v laptop {0} && setfattr -n user.x-amz-meta-rev -v 7 {0}",
        q(&src)
    ));
    if !tagged.status.success() {
        panic!(
            "the local disk does not take user xattrs: {}",
            String::from_utf8_lossy(&tagged.stderr)
        );
    }
    sh(&format!(
        "cp --preserve=xattr {} {}",
        q(&src),
        q(&m.join("a.txt"))
    ));
    assert_eq!(puts_seen(&proxy, &bucket, "a.txt"), 1, "one upload");
    let h = head(&st, &bucket, "a.txt");
    assert_eq!(h.metadata.get("origin"), Some("laptop"));
    assert_eq!(h.metadata.get("rev"), Some("7"));
    assert_eq!(h.content_type(), Some("text/plain"));
    assert_eq!(get_all(&st, &bucket, "a.txt"), b"local content\n");

    // cp -a: xattrs, mode, owner and times, all in the first upload.
    sh(&format!(
        "chmod 600 {0} && touch -d @1000000000 {0}",
        q(&src)
    ));
    sh(&format!("cp -a {} {}", q(&src), q(&m.join("b.txt"))));
    assert_eq!(puts_seen(&proxy, &bucket, "b.txt"), 1, "one upload");
    let h = head(&st, &bucket, "b.txt");
    assert_eq!(h.metadata.get("origin"), Some("laptop"));
    assert_eq!(mode_of(&h), Some(S_IFREG | 0o600));
    // (No uid/gid: cp skips fchown when the new file's owner already matches, as here.)
    assert_eq!(
        h.metadata
            .get("mtime")
            .map(|t| t.split('.').next().unwrap().to_string()),
        Some("1000000000".to_string())
    );
    let md = std::fs::metadata(m.join("b.txt")).unwrap();
    assert_eq!(md.mtime(), 1_000_000_000);
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);

    // cp -a of a file without xattrs does not fail (nothing to set, nothing refused).
    let plain = local.path().join("plain.txt");
    std::fs::write(&plain, b"plain\n").unwrap();
    sh(&format!("cp -a {} {}", q(&plain), q(&m.join("plain.txt"))));
    assert_eq!(get_all(&st, &bucket, "plain.txt"), b"plain\n");
}

/// `cp -a` of a whole directory tree does not fail either (its directories' times and modes go
/// to their markers).
#[test]
fn cp_a_of_a_directory_tree_into_the_mount() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-cp-tree");
    let st = srv.storage_in(&bucket);
    let m = Mount::new(srv, &bucket);
    let local = tempfile::tempdir().unwrap();
    std::fs::create_dir(local.path().join("tree")).unwrap();
    std::fs::write(local.path().join("tree/x.txt"), b"x").unwrap();
    sh(&format!(
        "cp -a {} {}",
        q(&local.path().join("tree")),
        q(&m.join("tree"))
    ));
    assert_eq!(get_all(&st, &bucket, "tree/x.txt"), b"x");
}

#[test]
fn chmod_chown_and_mtime_are_kept_across_a_remount() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("attrs");
    let st = srv.storage_in(&bucket);
    seed(
        &st,
        &bucket,
        "p.txt",
        b"perm",
        &[("x-amz-meta-color", "red")],
        "text/plain",
    );
    let m = Mount::new(srv, &bucket);
    let f = m.join("p.txt");

    sh(&format!("chmod 640 {}", q(&f)));
    let h = head(&st, &bucket, "p.txt");
    assert_eq!(mode_of(&h), Some(S_IFREG | 0o640));
    assert_eq!(h.metadata.get("color"), Some("red"));
    assert_eq!(h.content_type(), Some("text/plain"));

    sh(&format!("chown 1234:5678 {}", q(&f)));
    let h = head(&st, &bucket, "p.txt");
    assert_eq!(h.metadata.get("uid"), Some("1234"));
    assert_eq!(h.metadata.get("gid"), Some("5678"));
    assert_eq!(mode_of(&h), Some(S_IFREG | 0o640));

    // 2001-02-03 04:05:06 UTC = 981173106.
    sh(&format!("TZ=UTC touch -d '2001-02-03 04:05:06' {}", q(&f)));
    let h = head(&st, &bucket, "p.txt");
    let mt = h.metadata.get("mtime").expect("x-amz-meta-mtime");
    assert!(mt == "981173106" || mt.starts_with("981173106."), "{mt}");
    assert_eq!(get_all(&st, &bucket, "p.txt"), b"perm");
    assert_eq!(h.metadata.get("color"), Some("red"));
    assert_eq!(h.content_type(), Some("text/plain"));

    // A directory's mode too.
    std::fs::create_dir(m.join("d")).unwrap();
    sh(&format!("chmod 750 {}", q(&m.join("d"))));
    assert_eq!(mode_of(&head(&st, &bucket, "d/")), Some(S_IFDIR | 0o750));
    // Still so once the cached attributes expire (default TTL 1 s) and are fetched again.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&m.join("d")), 0o750);
    assert_eq!(mode(&f), 0o640);

    m.unmount();
    let m = Mount::new(srv, &bucket);
    // stat by name (lookup → HEAD).
    let md = std::fs::metadata(m.join("p.txt")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o640);
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    assert_eq!(md.mtime(), 981_173_106);
    assert_eq!(md.len(), 4);
    assert_eq!(
        std::fs::metadata(m.join("d")).unwrap().permissions().mode() & 0o7777,
        0o750
    );
    let out = sh(&format!("stat -c '%a %u %g %Y' {}", q(&m.join("p.txt"))));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "640 1234 5678 981173106"
    );
}

#[test]
fn ls_l_after_a_remount_shows_mode_owner_and_mtime() {
    let srv = server();
    let bucket = srv.fresh_bucket("attrs-ls");
    let st = srv.storage_in(&bucket);
    seed(
        &st,
        &bucket,
        "q.txt",
        b"q",
        &[
            ("x-amz-meta-mode", &(S_IFREG | 0o640).to_string()),
            ("x-amz-meta-uid", "1234"),
            ("x-amz-meta-gid", "5678"),
            ("x-amz-meta-mtime", "981173106"),
        ],
        "text/plain",
    );
    let m = Mount::new(srv, &bucket);
    // A listing first (readdirplus), then stat: what the listing alone cannot say must not
    // be reported wrong.
    let out = sh(&format!("ls -ln --time-style=+%s {}", q(m.path())));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = listing
        .lines()
        .find(|l| l.ends_with(" q.txt"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.starts_with("-rw-r----- "), "{line}");
    assert!(line.contains(" 1234 5678 "), "{line}");
    assert!(line.contains(" 981173106 "), "{line}");
}

#[test]
fn cp_p_into_and_cp_a_out_of_the_mount_keep_mtime() {
    let srv = server();
    let bucket = srv.fresh_bucket("mtime-cp");
    let st = srv.storage_in(&bucket);
    let m = Mount::new(srv, &bucket);
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("old.txt");
    std::fs::write(&src, b"old file\n").unwrap();
    sh(&format!("touch -d @1234567890 {}", q(&src)));
    sh(&format!("cp -p {} {}", q(&src), q(&m.join("old.txt"))));
    assert_eq!(
        std::fs::metadata(m.join("old.txt")).unwrap().mtime(),
        1_234_567_890
    );
    let h = head(&st, &bucket, "old.txt");
    let mt = h.metadata.get("mtime").expect("x-amz-meta-mtime");
    assert!(mt == "1234567890" || mt.starts_with("1234567890."), "{mt}");
    assert_eq!(get_all(&st, &bucket, "old.txt"), b"old file\n");

    // Out of the mount with cp -a: the local copy has the stored mtime.
    let back = local.path().join("back.txt");
    sh(&format!("cp -a {} {}", q(&m.join("old.txt")), q(&back)));
    assert_eq!(std::fs::metadata(&back).unwrap().mtime(), 1_234_567_890);
    assert_eq!(std::fs::read(&back).unwrap(), b"old file\n");

    // And after a remount.
    m.unmount();
    let m = Mount::new(srv, &bucket);
    let back2 = local.path().join("back2.txt");
    sh(&format!("cp -a {} {}", q(&m.join("old.txt")), q(&back2)));
    assert_eq!(std::fs::metadata(&back2).unwrap().mtime(), 1_234_567_890);
}

/// What `rclone copy --metadata` writes: `st_mode` in octal without a leading 0 (`100600`, which
/// read as decimal was a set-uid 0o4370 file), float-second mtime, RFC 3339 atime in the local
/// time zone. `ls -l` (a listing, its HEADs) and `stat` by name after a remount both show it,
/// and `cp -p` out of the mount keeps it.
#[test]
fn files_rclone_copy_metadata_wrote_show_their_mode_owner_and_times() {
    let srv = server();
    let bucket = srv.fresh_bucket("rclone-meta");
    let st = srv.storage_in(&bucket);
    // 2001-02-03 04:05:06 UTC = 981173106; the atime a second later, written at UTC+01:00.
    let rclone = [
        ("x-amz-meta-mode", "100600"),
        ("x-amz-meta-uid", "1234"),
        ("x-amz-meta-gid", "5678"),
        ("x-amz-meta-mtime", "981173106.5"),
        ("x-amz-meta-atime", "2001-02-03T05:05:07.25+01:00"),
        ("x-amz-meta-btime", "2001-02-03T05:05:07.25+01:00"),
    ];
    seed(&st, &bucket, "rc.txt", b"rclone", &rclone, "text/plain");
    let stat = |m: &Mount| {
        let out = sh(&format!(
            "stat -c '%A %u %g %X %Y' {}",
            q(&m.join("rc.txt"))
        ));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let want = "-rw------- 1234 5678 981173107 981173106";
    let m = Mount::new(srv, &bucket);
    let ls = String::from_utf8_lossy(&sh(&format!("ls -l {}", q(m.path()))).stdout).to_string();
    assert!(ls.contains("-rw------- 1 1234 5678 6 "), "{ls}");
    assert_eq!(stat(&m), want);
    let local = tempfile::tempdir().unwrap();
    let back = local.path().join("back.txt");
    sh(&format!("cp -p {} {}", q(&m.join("rc.txt")), q(&back)));
    let md = std::fs::metadata(&back).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    assert_eq!((md.mtime(), md.atime()), (981_173_106, 981_173_107));
    m.unmount();
    let m = Mount::new(srv, &bucket);
    assert_eq!(stat(&m), want, "by name after a remount (lookup, HEAD)");
}

/// rclone's `x-amz-meta-md5chksum` (the MD5 of a multipart upload's content, which `rclone copy`
/// checks downloads against) names the bytes: `chmod` and `mv` keep it, `>>` drops it, where
/// keeping it made `rclone copy` of the file fail with "md5 hash differ".
#[test]
fn a_rewrite_drops_rclones_digest_of_the_old_content() {
    let srv = server();
    let bucket = srv.fresh_bucket("rclone-md5");
    let st = srv.storage_in(&bucket);
    let rclone = [
        ("x-amz-meta-mtime", "981173106.5"),
        ("x-amz-meta-md5chksum", "N4RZnMM3OIycY6Lp+m7FdA=="),
    ];
    seed(
        &st,
        &bucket,
        "a.bin",
        b"rclone",
        &rclone,
        "application/octet-stream",
    );
    let m = Mount::new(srv, &bucket);
    sh(&format!("chmod 600 {}", q(&m.join("a.bin"))));
    sh(&format!(
        "mv {} {}",
        q(&m.join("a.bin")),
        q(&m.join("b.bin"))
    ));
    let h = head(&st, &bucket, "b.bin");
    assert_eq!(h.metadata.get("md5chksum"), Some(rclone[1].1), "same bytes");
    sh(&format!("echo more >> {}", q(&m.join("b.bin"))));
    let h = head(&st, &bucket, "b.bin");
    assert_eq!(get_all(&st, &bucket, "b.bin"), b"rclonemore\n");
    assert_eq!(h.metadata.get("md5chksum"), None, "{:?}", h.metadata);
    assert_eq!(mode_of(&h), Some(S_IFREG | 0o600), "the rest is kept");
    assert_eq!(
        getfattr(&m.join("b.bin"), "user.x-amz-meta-md5chksum"),
        None
    );
}

#[test]
fn symlinks_are_stored_the_s3fs_way() {
    let srv = server();
    let bucket = srv.fresh_bucket("symlinks");
    let st = srv.storage_in(&bucket);
    // One written by s3fs: body = target, mode 41471 = S_IFLNK | 0777.
    seed(
        &st,
        &bucket,
        "from-s3fs",
        b"../elsewhere/file",
        &[("x-amz-meta-mode", "41471")],
        "application/octet-stream",
    );
    let m = Mount::new(srv, &bucket);
    sh(&format!("ln -s target {}", q(&m.join("link"))));
    assert_eq!(
        std::fs::read_link(m.join("link")).unwrap(),
        Path::new("target")
    );
    assert!(std::fs::symlink_metadata(m.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    let h = head(&st, &bucket, "link");
    assert_eq!(get_all(&st, &bucket, "link"), b"target");
    let mode = mode_of(&h).expect("x-amz-meta-mode");
    assert_eq!(mode & 0o170000, S_IFLNK, "mode {mode} ({mode:o})");

    assert_eq!(
        std::fs::read_link(m.join("from-s3fs")).unwrap(),
        Path::new("../elsewhere/file")
    );
    assert!(std::fs::symlink_metadata(m.join("from-s3fs"))
        .unwrap()
        .file_type()
        .is_symlink());

    m.unmount();
    let m = Mount::new(srv, &bucket);
    // stat by name first (lookup → HEAD), then ls -l.
    for name in ["link", "from-s3fs"] {
        assert!(
            std::fs::symlink_metadata(m.join(name))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{name}"
        );
    }
    let out = sh(&format!("ls -l {}", q(m.path())));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.ends_with("link -> target")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.ends_with("from-s3fs -> ../elsewhere/file")),
        "{listing}"
    );
}

#[test]
fn ls_l_right_after_a_remount_shows_symlinks() {
    let srv = server();
    let bucket = srv.fresh_bucket("symlinks-ls");
    let st = srv.storage_in(&bucket);
    seed(
        &st,
        &bucket,
        "sl",
        b"somewhere",
        &[("x-amz-meta-mode", "41471")],
        "application/octet-stream",
    );
    let m = Mount::new(srv, &bucket);
    // A listing first: no lookup by name has happened yet.
    let out = sh(&format!("ls -l {}", q(m.path())));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.ends_with("sl -> somewhere")),
        "{listing}"
    );
}

#[test]
fn a_read_only_mount_refuses_every_change_with_erofs() {
    let srv = server();
    let bucket = srv.fresh_bucket("read-only");
    let st = srv.storage_in(&bucket);
    seed(
        &st,
        &bucket,
        "r.txt",
        b"read only",
        &[("x-amz-meta-color", "red")],
        "text/plain",
    );
    let m = Mount::with_args(srv, &bucket, &["--read-only"]);
    let f = m.join("r.txt");
    let before = head(&st, &bucket, "r.txt");

    assert_eq!(std::fs::read(&f).unwrap(), b"read only");
    assert_eq!(
        getfattr(&f, "user.x-amz-meta-color").as_deref(),
        Some("red")
    );
    assert_eq!(
        set_xattr(&f, "user.x-amz-meta-color", b"blue", 0),
        Err(libc::EROFS)
    );
    let erofs = |r: std::io::Result<()>| {
        let e = r.expect_err("a change succeeded on a read-only mount");
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    };
    erofs(std::fs::write(&f, b"x"));
    erofs(std::fs::write(m.join("new.txt"), b"x"));
    erofs(std::fs::set_permissions(
        &f,
        std::fs::Permissions::from_mode(0o600),
    ));
    erofs(std::fs::create_dir(m.join("d")));
    erofs(std::os::unix::fs::symlink("t", m.join("l")));
    erofs(std::fs::remove_file(&f));
    erofs(std::fs::rename(&f, m.join("moved.txt")));
    let out = run(&format!("setfattr -x user.x-amz-meta-color {}", q(&f)));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let after = head(&st, &bucket, "r.txt");
    assert_eq!(after.etag, before.etag);
    assert_eq!(after.metadata, before.metadata);
    assert_eq!(get_all(&st, &bucket, "r.txt"), b"read only");
    assert!(st.head_object(&obj(&bucket, "new.txt")).is_err());
    assert!(st.head_object(&obj(&bucket, "d/")).is_err());
}

#[test]
fn xattr_edge_values_and_the_size_protocol() {
    if skip_on(ServerLimit::DecodesEncodedMetadata) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-edge");
    let st = srv.storage_in(&bucket);
    seed(
        &st,
        &bucket,
        "e.txt",
        b"edge",
        &[("x-amz-meta-k", "v")],
        "text/plain",
    );
    let proxy = Proxy::start(&srv.endpoint);
    let m = Mount::new(&srv.via(proxy.endpoint()), &bucket);
    let f = m.join("e.txt");

    // Values S3 would mangle if sent as they are: surrounding spaces, something that looks
    // RFC 2047-encoded already, an empty value.
    for (name, value) in [
        ("spaces", "  padded  "),
        ("lookalike", "=?UTF-8?B?aGk=?="),
        ("empty", ""),
        ("tab", "a\tb"),
    ] {
        set_xattr(&f, format!("user.x-amz-meta-{name}"), value.as_bytes(), 0)
            .unwrap_or_else(|e| panic!("{name}: errno {e}"));
        assert_eq!(
            get_xattr(&f, &format!("user.x-amz-meta-{name}")).as_deref(),
            Ok(value.as_bytes()),
            "{name} through the mount"
        );
        assert_eq!(
            head(&st, &bucket, "e.txt").metadata.get(name),
            Some(value),
            "{name} through the API"
        );
    }
    // Not UTF-8: refused, nothing sent.
    assert_eq!(
        set_xattr(&f, "user.x-amz-meta-bin", b"\xff\xfe", 0),
        Err(libc::EINVAL)
    );
    assert_eq!(head(&st, &bucket, "e.txt").metadata.get("bin"), None);

    // The size protocol: size 0 gives the length, a small buffer is ERANGE.
    let p = cpath(&f);
    let n = CString::new("user.x-amz-meta-k").unwrap();
    // SAFETY: a null buffer with size 0 asks for the length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(len, 1);
    let big = CString::new("user.x-amz-meta-spaces").unwrap();
    let mut small = [0u8; 2];
    // SAFETY: a buffer of the given length.
    let r = unsafe { libc::getxattr(p.as_ptr(), big.as_ptr(), small.as_mut_ptr().cast(), 2) };
    assert_eq!(r, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ERANGE)
    );

    // truncate and mv keep the metadata; content and Content-Type as expected.
    sh(&format!("truncate -s 2 {}", q(&f)));
    let h = head(&st, &bucket, "e.txt");
    assert_eq!(get_all(&st, &bucket, "e.txt"), b"ed");
    assert_eq!(h.metadata.get("k"), Some("v"));
    assert_eq!(h.metadata.get("spaces"), Some("  padded  "));
    assert_eq!(h.content_type(), Some("text/plain"));
    sh(&format!("mv {} {}", q(&f), q(&m.join("moved.txt"))));
    let h = head(&st, &bucket, "moved.txt");
    assert_eq!(h.metadata.get("k"), Some("v"));
    assert_eq!(h.metadata.get("lookalike"), Some("=?UTF-8?B?aGk=?="));
    assert_eq!(
        getfattr(&m.join("moved.txt"), "user.x-amz-meta-k").as_deref(),
        Some("v")
    );

    // The root of a whole-bucket mount is the bucket, no object: metadata cannot be stored
    // there (ENOTSUP, and no request that would reach the bucket itself), while chmod/touch
    // of the root are accepted for this mount only (so `cp -a dir/. mnt/` works).
    assert_eq!(
        set_xattr(m.path(), "user.x-amz-meta-root", b"x", 0),
        Err(libc::EOPNOTSUPP)
    );
    assert_eq!(
        get_xattr(m.path(), "user.x-amz-meta-root"),
        Err(libc::ENODATA)
    );
    let puts_before = puts_seen(&proxy, &bucket, "");
    sh(&format!(
        "chmod 700 {0} && touch -d @1000000000 {0}",
        q(m.path())
    ));
    assert_eq!(puts_seen(&proxy, &bucket, ""), puts_before);
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("r.txt"), b"r").unwrap();
    sh(&format!("cp -a {}/. {}", q(local.path()), q(m.path())));
    assert_eq!(get_all(&st, &bucket, "r.txt"), b"r");
}

#[test]
fn the_root_of_a_whole_bucket_mount_has_no_metadata_and_asks_for_none() {
    // The root of a whole-bucket mount is the bucket itself: there is no object to hold
    // metadata. A HEAD of the empty key is a HeadBucket, whose reply says nothing of metadata
    // (and has no Content-Length on Garage and s3s-fs: EIO there, ENODATA on moto by chance).
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-root");
    let proxy = Proxy::start(&srv.endpoint);
    let m = Mount::new(&srv.via(proxy.endpoint()), &bucket);
    // The mount's start-up check is a HeadBucket; count from here.
    let methods = ["HEAD", "GET", "PUT"];
    let before = methods.map(|method| requests_seen(&proxy, method, &bucket, ""));
    assert_eq!(
        get_xattr(m.path(), "user.x-amz-meta-mode"),
        Err(libc::ENODATA)
    );
    assert_eq!(list_xattr(m.path()), Ok(Vec::new()));
    assert_eq!(getfattr_dump(m.path()), Vec::<String>::new());
    // Kept for this mount only: still no metadata, and nothing sent for the bucket itself.
    sh(&format!("chmod 700 {}", q(m.path())));
    assert_eq!(list_xattr(m.path()), Ok(Vec::new()));
    for (method, before) in methods.into_iter().zip(before) {
        assert_eq!(
            requests_seen(&proxy, method, &bucket, ""),
            before,
            "{method} of the bucket itself"
        );
    }
    // The proxy sees the mount's requests (so the counts above can move).
    assert!(before[0] > 0, "the start-up HeadBucket went elsewhere");
}

#[test]
fn overwriting_after_touch_d_moves_mtime_and_keeps_mode() {
    let srv = server();
    let bucket = srv.fresh_bucket("mtime-overwrite");
    let st = srv.storage_in(&bucket);
    let proxy = Proxy::start(&srv.endpoint);
    let m = Mount::new(&srv.via(proxy.endpoint()), &bucket);
    let f = m.join("t.txt");
    std::fs::write(&f, b"one").unwrap();
    sh(&format!("chmod 600 {0} && touch -d @1000000000 {0}", q(&f)));
    assert_eq!(std::fs::metadata(&f).unwrap().mtime(), 1_000_000_000);
    std::fs::write(&f, b"two").unwrap();
    let h = head(&st, &bucket, "t.txt");
    assert_eq!(mode_of(&h), Some(S_IFREG | 0o600));
    let mt: f64 = h.metadata.get("mtime").unwrap().parse().unwrap();
    assert!(
        mt > 1_700_000_000.0,
        "the new content has a new mtime: {mt}"
    );
    let md = std::fs::metadata(&f).unwrap();
    assert!(md.mtime() > 1_700_000_000);
    assert_eq!(md.permissions().mode() & 0o7777, 0o600);
    // A file written while open then given an mtime before close keeps that mtime.
    let g = m.join("u.txt");
    let script = format!(
        "import os\nfd = os.open({:?}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\nos.write(fd, b'x')\nos.utime(fd, (1100000000, 1100000000))\nos.close(fd)\n",
        g.display().to_string()
    );
    common::python(&script, &[]);
    assert_eq!(puts_seen(&proxy, &bucket, "u.txt"), 1);
    let mt = head(&st, &bucket, "u.txt")
        .metadata
        .get("mtime")
        .unwrap()
        .to_string();
    assert!(mt.starts_with("1100000000"), "{mt}");
    assert_eq!(std::fs::metadata(&g).unwrap().mtime(), 1_100_000_000);
}

#[test]
fn no_xattr_turns_extended_attributes_off_and_keeps_files_working() {
    let server = server();
    let bucket = server.fresh_bucket("noxattr");
    let mount = Mount::with_args(server, &bucket, &["--no-xattr"]);
    let f = mount.join("f.txt");
    std::fs::write(&f, b"content").expect("write");
    let out = std::process::Command::new("setfattr")
        .args(["-n", "user.tag", "-v", "x"])
        .arg(&f)
        .output()
        .expect("run setfattr");
    assert!(!out.status.success(), "setfattr succeeded with --no-xattr");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not supported"),
        "{out:?}"
    );
    let out = std::process::Command::new("getfattr")
        .args(["-d"])
        .arg(&f)
        .output()
        .expect("run getfattr");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = sh(&format!("ls -l {}", mount.path().display()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("f.txt"));
    assert_eq!(std::fs::read(&f).expect("read"), b"content");
    // Nothing reached the object's metadata.
    let storage = server.storage_in(&bucket);
    let info = storage
        .head_object(&obj(&bucket, "f.txt"))
        .expect("head f.txt");
    assert!(info.metadata.get("tag").is_none());
}

/// The storage class and encryption headers a HEAD names, sorted.
fn how_stored(storage: &Storage, bucket: &str, key: &str) -> Vec<(String, String)> {
    let mut h: Vec<_> = head(storage, bucket, key)
        .content_headers
        .into_iter()
        .filter(|(n, _)| n.starts_with("x-amz-"))
        .collect();
    h.sort();
    h
}

#[test]
fn storage_class_and_encryption_survive_chmod_setfattr_rewrites_and_mv() {
    // S3 puts a copy or a PUT in STANDARD, under the bucket's default encryption, unless the
    // request names others: every change the mount makes by a copy or an upload must name the
    // object's own again, or a `chmod` would move it out of STANDARD_IA or off its KMS key.
    if skip_on(ServerLimit::NoStorageClasses) {
        return;
    }
    let srv = server();
    let storage = srv.storage();
    let bucket = srv.fresh_bucket("sclass");
    let stored = vec![
        (
            "x-amz-server-side-encryption".to_string(),
            "aws:kms".to_string(),
        ),
        (
            "x-amz-server-side-encryption-aws-kms-key-id".to_string(),
            "arn:aws:kms:us-east-1:123456789012:key/k1".to_string(),
        ),
        ("x-amz-storage-class".to_string(), "STANDARD_IA".to_string()),
    ];
    let mut content_headers = vec![("content-type".to_string(), "text/plain".to_string())];
    content_headers.extend(stored.iter().cloned());
    let opts = PutOptions {
        content_headers,
        ..PutOptions::default()
    };
    storage
        .bucket(&bucket)
        .put("d/cold.txt", RequestBody::Bytes(b"cold"), &opts)
        .unwrap();
    assert_eq!(
        how_stored(&storage, &bucket, "d/cold.txt"),
        stored,
        "as put"
    );
    let m = Mount::new(srv, &bucket);
    let f = m.join("d/cold.txt");
    let f = f.display();
    sh(&format!("chmod 600 '{f}'"));
    assert_eq!(
        how_stored(&storage, &bucket, "d/cold.txt"),
        stored,
        "after chmod"
    );
    sh(&format!("setfattr -n user.x-amz-meta-tier -v cold '{f}'"));
    assert_eq!(
        how_stored(&storage, &bucket, "d/cold.txt"),
        stored,
        "after setfattr"
    );
    sh(&format!("echo rewritten > '{f}'"));
    assert_eq!(
        how_stored(&storage, &bucket, "d/cold.txt"),
        stored,
        "after a rewrite"
    );
    let d = m.join("d");
    sh(&format!("mv '{f}' '{}/moved.txt'", d.display()));
    assert_eq!(
        how_stored(&storage, &bucket, "d/moved.txt"),
        stored,
        "after mv"
    );
    // A directory's keys are copied as listed, without a HEAD each: the class is in the
    // listing, the encryption is not (the copies take the bucket's default).
    sh(&format!("mv '{}' '{}'", d.display(), m.join("e").display()));
    let moved = how_stored(&storage, &bucket, "e/moved.txt");
    assert!(
        moved.contains(&("x-amz-storage-class".to_string(), "STANDARD_IA".to_string())),
        "after mv of the directory: {moved:?}"
    );
    assert_eq!(get_all(&storage, &bucket, "e/moved.txt"), b"rewritten\n");
    let info = head(&storage, &bucket, "e/moved.txt");
    assert_eq!(info.metadata.get("tier"), Some("cold"));
    // An archived object: listed, but its GET and its copies are refused until restored.
    let frozen = PutOptions {
        content_headers: vec![("x-amz-storage-class".to_string(), "GLACIER".to_string())],
        ..PutOptions::default()
    };
    storage
        .bucket(&bucket)
        .put("frozen.txt", RequestBody::Bytes(b"frozen"), &frozen)
        .unwrap();
    let f = m.join("frozen.txt");
    let err = std::fs::read(&f).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "read: {err}");
    let out = run(&format!("chmod 600 '{}'", f.display()));
    assert!(!out.status.success());
    assert!(
        m.log().contains("archived: restore it first"),
        "{}",
        m.log()
    );
}

#[test]
fn storage_class_option_applies_to_new_files_only() {
    if skip_on(ServerLimit::NoStorageClasses) {
        return;
    }
    let srv = server();
    let storage = srv.storage();
    let bucket = srv.fresh_bucket("sclass-new");
    seed(&storage, &bucket, "old.txt", b"old", &[], "text/plain");
    let m = Mount::with_args(srv, &bucket, &["--storage-class", "GLACIER_IR"]);
    let class = vec![("x-amz-storage-class".to_string(), "GLACIER_IR".to_string())];
    sh(&format!("echo new > '{}'", m.join("new.txt").display()));
    assert_eq!(how_stored(&storage, &bucket, "new.txt"), class, "echo >");
    sh(&format!(
        "cp '{}' '{}'",
        m.join("old.txt").display(),
        m.join("copy.txt").display()
    ));
    assert_eq!(
        how_stored(&storage, &bucket, "copy.txt"),
        class,
        "cp inside the mount"
    );
    sh(&format!("echo again > '{}'", m.join("old.txt").display()));
    assert_eq!(
        how_stored(&storage, &bucket, "old.txt"),
        [],
        "a rewrite keeps STANDARD"
    );
    sh(&format!("mkdir '{}'", m.join("dir").display()));
    assert_eq!(
        how_stored(&storage, &bucket, "dir/"),
        [],
        "a directory marker"
    );
}

/// The tags of `key`, as GetObjectTagging lists them, sorted.
fn tags(storage: &Storage, bucket: &str, key: &str) -> Vec<(String, String)> {
    let mut t = storage
        .get_object_tagging(&obj(bucket, key))
        .unwrap_or_else(|e| panic!("GetObjectTagging {key}: {e}"))
        .0;
    t.sort();
    t
}

#[test]
fn object_tags_survive_rewrites_and_changes_and_cp_gives_the_target_its_own() {
    // S3 gives a PUT's object the tags the request carries and none otherwise: a rewrite
    // through the mount must send them again (a copy keeps them by itself).
    if skip_on(ServerLimit::NoObjectTags) {
        return;
    }
    let srv = server();
    let storage = srv.storage();
    let bucket = srv.fresh_bucket("tags");
    let mut expected = vec![
        ("owner".to_string(), "a=b+c/d:e@f".to_string()),
        ("project".to_string(), "blue green".to_string()),
    ];
    expected.sort();
    let set = s3mount::s3::meta::TagSet(expected.clone());
    let opts = PutOptions {
        content_headers: vec![("x-amz-tagging".to_string(), set.to_header())],
        ..PutOptions::default()
    };
    let put = |key: &str| {
        storage
            .bucket(&bucket)
            .put(key, RequestBody::Bytes(b"tagged"), &opts)
            .unwrap();
    };
    put("d/t.txt");
    put("big.bin");
    assert_eq!(tags(&storage, &bucket, "d/t.txt"), expected, "as put");
    let m = Mount::new(srv, &bucket);
    let f = m.join("d/t.txt");
    let f = f.display();
    sh(&format!("echo rewritten > '{f}'"));
    assert_eq!(
        tags(&storage, &bucket, "d/t.txt"),
        expected,
        "after a rewrite"
    );
    sh(&format!("echo more >> '{f}'"));
    sh(&format!("chmod 600 '{f}'"));
    sh(&format!("setfattr -n user.x-amz-meta-tier -v warm '{f}'"));
    sh(&format!("mv '{f}' '{}'", m.join("d/moved.txt").display()));
    sh(&format!(
        "mv '{}' '{}'",
        m.join("d").display(),
        m.join("e").display()
    ));
    assert_eq!(
        tags(&storage, &bucket, "e/moved.txt"),
        expected,
        "after >>, chmod, setfattr, mv, mv of the directory"
    );
    assert_eq!(
        get_all(&storage, &bucket, "e/moved.txt"),
        b"rewritten\nmore\n"
    );
    // A rewrite streamed as a multipart upload.
    sh(&format!(
        "dd if=/dev/urandom of='{}' bs=1M count=24 status=none",
        m.join("big.bin").display()
    ));
    assert_eq!(head(&storage, &bucket, "big.bin").size, 24 << 20);
    assert_eq!(tags(&storage, &bucket, "big.bin"), expected, "after dd");
    // cp inside the mount copies on the server; the target has its own tags (none), as a cp
    // through read and write would give it.
    sh(&format!(
        "cp '{}' '{}'",
        m.join("e/moved.txt").display(),
        m.join("copy.txt").display()
    ));
    assert_eq!(get_all(&storage, &bucket, "copy.txt"), b"rewritten\nmore\n");
    assert_eq!(tags(&storage, &bucket, "copy.txt"), []);
    assert_eq!(
        tags(&storage, &bucket, "e/moved.txt"),
        expected,
        "the source"
    );
}

/// `rsync -aX` copies what `listxattr` names. A second run has nothing to do (it used to find
/// the mount's own `x-amz-meta-mode`/`-mtime`/`-ctime` on every file, remove them and copy
/// every object again, and to fail with code 23 on a symlink, whose listed names the kernel
/// lets nobody read), and a file taken out with `cp -a`, changed and brought back keeps its new
/// mode (it used to carry its old `x-amz-meta-mode` out and back in as an xattr).
#[test]
fn rsync_ax_twice_has_nothing_left_to_do_and_a_copy_taken_out_comes_back_as_changed() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("rsync-ax");
    let proxy = Proxy::start(&srv.endpoint);
    let m = Mount::new(&srv.via(proxy.endpoint()), &bucket);
    let local = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = local.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), b"data\n").unwrap();
    sh(&format!(
        "cd {} && chmod 600 d/f && setfattr -n user.tag -v blue d/f && ln -s d/f link && mkfifo fifo \
         && touch -d 2003-01-01 d/f && touch -h -d 2004-01-01 link && touch -d 2005-01-01 d .",
        q(&src)
    ));
    let dst = m.join("r");
    sh(&format!("rsync -aX {}/ {}/", q(&src), q(&dst)));
    let nothing_to_do = |what: &str| {
        let out = run(&format!(
            "rsync -aX --itemize-changes {}/ {}/",
            q(&src),
            q(&dst)
        ));
        assert!(out.status.success(), "{what}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{what}");
    };
    nothing_to_do("a second run");
    assert_eq!(
        getfattr(&dst.join("d/f"), "user.tag").as_deref(),
        Some("blue")
    );
    let on_link = sh(&format!(
        "getfattr --absolute-names -h -d -m - {}",
        q(&dst.join("link"))
    ));
    assert_eq!(String::from_utf8_lossy(&on_link.stdout), "", "{on_link:?}");
    let st = srv.storage_in(&bucket);
    assert_eq!(mode_of(&head(&st, &bucket, "r/d/f")), Some(S_IFREG | 0o600));
    // The mount's own names are still there, and read by name.
    assert_eq!(
        getfattr(&dst.join("d/f"), "user.x-amz-meta-mode"),
        Some((S_IFREG | 0o600).to_string())
    );
    let puts = || proxy.seen().iter().filter(|s| s.method == "PUT").count();
    let before = puts();
    nothing_to_do("a third run");
    assert_eq!(puts(), before, "no copy, no upload");

    // Out with `cp -a`, changed, back with `rsync -aX` and with `tar --xattrs`.
    let out = local.path().join("out");
    sh(&format!("cp -a {} {}", q(&dst.join("d/f")), q(&out)));
    assert_eq!(getfattr_dump(&out), vec!["user.tag=\"blue\"".to_string()]);
    sh(&format!("chmod 640 {}", q(&out)));
    sh(&format!("rsync -aX {} {}", q(&out), q(&dst.join("back"))));
    sh(&format!(
        "tar --xattrs -cf {0}.tar -C {1} out && tar --xattrs -xpf {0}.tar -C {2}",
        q(&out),
        q(local.path()),
        q(&dst)
    ));
    for back in ["back", "out"] {
        let md = std::fs::metadata(dst.join(back)).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o640, "{back}");
        assert_eq!(
            mode_of(&head(&st, &bucket, &format!("r/{back}"))),
            Some(S_IFREG | 0o640)
        );
    }
}
