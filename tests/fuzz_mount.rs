//! Bad input at a real mount: keys that cannot be file names (or would lead out of the mount),
//! listings with bytes that are not UTF-8, and arbitrary extended attribute names and values.
//! Nothing may panic s3mount, show a name outside the rules, or store something else than what
//! the model says; valid neighbours keep working.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::proxy::{BodyRewrite, Fault, Proxy, Rule};
use common::{server, server_bytes, skip_on, Mount, Server, ServerLimit};
use s3mount::fs::xattr_json::{self, storable_name};
use s3mount::s3::ObjectStore;
use s3mount::s3::{PutOptions, RequestBody};
use s3mount::{Metadata, Storage};

use common::obj;

/// The test server's credentials with the proxy's endpoint.
fn via(proxy: &Proxy) -> Server {
    server().via(proxy.endpoint())
}

fn put(st: &Storage, bucket: &str, key: &str, data: &[u8]) -> bool {
    st.bucket(bucket)
        .put(key, RequestBody::Bytes(data), &PutOptions::default())
        .is_ok()
}

use common::Rng;

/// The rule the mount applies to a key component.
fn valid(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && c.len() <= 1024 && !c.contains('\0')
}

/// What the mount must show for these keys: directories and files (paths relative to the
/// root), a directory shadowing a file of the same path.
fn expected_tree(keys: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    for k in keys {
        let parts: Vec<&str> = k.split('/').collect();
        for i in 1..parts.len() {
            if !parts[..i].iter().all(|c| valid(c)) {
                break;
            }
            dirs.insert(parts[..i].join("/"));
        }
        if !k.ends_with('/') && parts.iter().all(|c| valid(c)) {
            files.insert(k.clone());
        }
    }
    let files = files.difference(&dirs).cloned().collect();
    (dirs, files)
}

fn walk(root: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("readdir {}: {e}", d.display())) {
            let p = e.expect("entry").path();
            // Every entry is a plain name inside the mount.
            let canon = p.canonicalize().expect("canonicalize");
            assert!(
                canon.starts_with(root),
                "{} leads out of the mount",
                p.display()
            );
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                dirs.insert(rel);
                todo.push(p);
            } else {
                files.insert(rel);
            }
        }
    }
    (dirs, files)
}

#[test]
fn keys_that_escape_or_cannot_be_names_stay_hidden() {
    let srv = server();
    let bucket = srv.fresh_bucket("escape");
    let st = srv.storage_in(&bucket);
    let long = "L".repeat(300);
    let mut wanted: Vec<String> = [
        "a/../../etc/x",
        "../x",
        "../../root/.ssh/authorized_keys",
        "a//b",
        "./c",
        "/lead",
        "//double-lead",
        "trail/",
        "x/./y",
        "d/..",
        "..",
        ".",
        "nul\0key",
        "sib/valid",
        "sib/also valid.txt",
        "é/ü",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    wanted.push(format!("sib/{long}"));
    wanted.push(format!("{long}/inner"));
    // Over the 1024 bytes a FUSE request carries: never a name.
    let longest = "M".repeat(1100);
    wanted.push(format!("sib/{longest}"));
    // Random keys from good and bad components.
    let comps = ["k0", "k1", "k 2", "", ".", "..", "é", "\0", &long];
    let mut rng = Rng(7);
    for _ in 0..60 {
        let n = 1 + rng.below(4);
        let mut k: Vec<&str> = (0..n).map(|_| comps[rng.below(comps.len())]).collect();
        if rng.below(5) == 0 {
            k.insert(0, "");
        }
        let mut k = k.join("/");
        if rng.below(5) == 0 {
            k.push('/');
        }
        if !k.is_empty() && k.len() <= 1024 {
            wanted.push(k);
        }
    }
    let mut stored_ok = 0;
    for k in &wanted {
        if put(&st, &bucket, k, k.as_bytes()) {
            stored_ok += 1;
        }
    }
    // What the server holds is the truth (it may refuse or rewrite some of them).
    let (objects, _) = st.bucket(&bucket).list_all("", None).expect("list");
    let keys: Vec<String> = objects.into_iter().map(|o| o.key).collect();
    let verbatim = wanted.iter().filter(|k| keys.contains(k)).count();
    let m = Mount::new(srv, &bucket);
    let (want_dirs, want_files) = expected_tree(&keys);
    let (dirs, files) = walk(m.path());
    assert_eq!(dirs, want_dirs, "directories shown");
    assert_eq!(files, want_files, "files shown");
    // Valid ones read right; the bad ones cannot even be looked up.
    for f in &files {
        let got = std::fs::read(m.join(f)).unwrap_or_else(|e| panic!("read {f}: {e}"));
        assert_eq!(Some(got), server_bytes(&st, f), "{f}");
    }
    // Another client's name over 255 bytes is shown (where the server keeps it); one over
    // 1024 cannot be.
    let long_kept = keys.contains(&format!("sib/{long}"));
    assert_eq!(
        std::fs::metadata(m.join("sib").join(&long)).is_ok(),
        long_kept
    );
    assert!(std::fs::metadata(m.join("sib").join(&longest)).is_err());
    assert!(!Path::new("/etc/x").exists());
    // The listing through the shell too, and the mount is alive and writable afterwards.
    common::sh(&format!("ls -laR '{}' > /dev/null", m.path().display()));
    common::sh(&format!("find '{}' > /dev/null", m.path().display()));
    std::fs::write(m.join("sib/after"), b"ok").unwrap();
    assert_eq!(server_bytes(&st, "sib/after").as_deref(), Some(&b"ok"[..]));
    assert!(!m.log().contains("panicked"), "{}", m.log());
    eprintln!(
        "bad keys: {} tried, {stored_ok} stored ({verbatim} verbatim), {} keys on the server, {} dirs and {} files shown",
        wanted.len(),
        keys.len(),
        dirs.len(),
        files.len()
    );
}

#[test]
fn listings_with_keys_that_are_not_utf8_hide_them_or_fail_cleanly() {
    let srv = server();
    let bucket = srv.fresh_bucket("not-utf8");
    let st = srv.storage_in(&bucket);
    for k in ["d/good", "d/zzbadzz", "d/zzrawzz", "e/good", "e/zzrawzz"] {
        assert!(put(&st, &bucket, k, k.as_bytes()));
    }
    let proxy = Proxy::start(&srv.endpoint);
    // Listings are url-encoded: put bytes that decode to no UTF-8 into one key.
    proxy.add(Rule::new(
        "GET",
        "list-type=2",
        Fault::RewriteBody(BodyRewrite::new(|body| {
            let text = String::from_utf8_lossy(body).replace("zzbadzz", "bad%FF%FEname");
            text.into_bytes()
        })),
    ));
    let m = Mount::with_args(&via(&proxy), &bucket, &["--metadata-ttl", "0"]);
    let names: BTreeSet<String> = std::fs::read_dir(m.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["good", "zzrawzz"].iter().map(|s| s.to_string()).collect()
    );
    assert_eq!(std::fs::read(m.join("d/good")).unwrap(), b"d/good");

    // Raw bytes that are not UTF-8 make the whole reply unreadable XML: the listing fails with
    // an error (not a panic, not a hang), and works again once the server behaves. Another
    // directory: `d`'s listing may still be fresh (one that took long is trusted as long as it
    // took, even with a TTL of 0).
    proxy.clear_rules();
    proxy.add(Rule::new(
        "GET",
        "list-type=2",
        Fault::RewriteBody(BodyRewrite::new(|body| {
            let text = String::from_utf8_lossy(body).into_owned();
            let mut out = Vec::new();
            for (i, part) in text.split("zzrawzz").enumerate() {
                if i > 0 {
                    out.extend_from_slice(b"raw\xff\xfe");
                }
                out.extend_from_slice(part.as_bytes());
            }
            out
        })),
    ));
    let err = std::fs::read_dir(m.join("e"))
        .and_then(|rd| rd.collect::<Result<Vec<_>, _>>())
        .expect_err("a listing that is not XML");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    proxy.clear_rules();
    assert_eq!(std::fs::read_dir(m.join("e")).unwrap().count(), 2);
    assert!(!m.log().contains("panicked"));
    assert!(proxy.count("GET", "list-type=2") >= 3);
}

use common::set_xattr;

fn get_xattr(path: &Path, name: &[u8]) -> Result<Vec<u8>, i32> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).map_err(|_| libc::EINVAL)?;
    let mut buf = vec![0u8; 70 * 1024];
    // SAFETY: as above.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// The metadata name a valid xattr name maps to, if it is one.
fn short_name(name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(name).ok()?;
    let prefix = "user.x-amz-meta-";
    if s.len() <= prefix.len() || !s.is_char_boundary(prefix.len()) {
        return None;
    }
    s[..prefix.len()]
        .eq_ignore_ascii_case(prefix)
        .then(|| s[prefix.len()..].to_ascii_lowercase())
}

/// What the names kept in `x-amz-meta-xattr` take of the 2 KB of metadata.
fn kept_size(others: &BTreeMap<Vec<u8>, Vec<u8>>) -> usize {
    let x: xattr_json::Xattrs = others
        .iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
        .collect();
    xattr_json::render(&x).map_or(0, |v| "xattr".len() + v.len())
}

/// Names the mount accepts: letters, digits, `-`, `_`, `.` (what every S3 server keeps).
fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[test]
fn xattr_names_and_values_fuzzed_through_the_mount() {
    if skip_on(ServerLimit::DecodesEncodedMetadata) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("xattr-fuzz");
    let st = srv.storage_in(&bucket);
    assert!(put(&st, &bucket, "f", b"content stays"));
    let m = Mount::new(srv, &bucket);
    let f = m.join("f");
    let mut rng = Rng(0xA77);
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    // Names kept in `x-amz-meta-xattr`.
    let mut others: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let names_pool: Vec<Vec<u8>> = vec![
        b"user.x-amz-meta-a".to_vec(),
        b"user.x-amz-meta-B".to_vec(),
        b"USER.X-AMZ-META-a".to_vec(),
        b"user.x-amz-meta-".to_vec(),
        b"user.x-amz-meta-has space".to_vec(),
        b"user.x-amz-meta-\xc3\xa9".to_vec(),
        b"user.x-amz-meta-\xff".to_vec(),
        b"user.x-amz-meta-tok!#$%&'*+-.^_`|~".to_vec(),
        b"user.other".to_vec(),
        b"user.".to_vec(),
        b"trusted.x".to_vec(),
        b"security.x".to_vec(),
        b"system.x".to_vec(),
        b"".to_vec(),
        b"noprefix".to_vec(),
        [b"user.x-amz-meta-".to_vec(), vec![b'n'; 250]].concat(),
        [b"user.x-amz-meta-".to_vec(), vec![b'n'; 300]].concat(),
    ];
    const CASES: usize = 200;
    for _ in 0..CASES {
        let name = match rng.below(2) {
            0 => {
                // A fresh valid-looking name from random token characters.
                let chars = b"abcXYZ019-_.~!";
                let n: Vec<u8> = (0..1 + rng.below(8))
                    .map(|_| chars[rng.below(chars.len())])
                    .collect();
                [b"user.x-amz-meta-".to_vec(), n].concat()
            }
            _ => names_pool[rng.below(names_pool.len())].clone(),
        };
        let value: Vec<u8> = match rng.below(7) {
            0 => Vec::new(),
            1 => b"plain value".to_vec(),
            2 => "h\u{e9}llo w\u{f6}rld \u{65e5}\u{672c}".as_bytes().to_vec(),
            3 => vec![0xff, 0xfe, 0x00, 0x01],
            4 => vec![b'v'; 1 + rng.below(3000)],
            5 => vec![b'w'; 70 * 1024],
            _ => format!(" =?UTF-8?B?{}?= ", rng.next()).into_bytes(),
        };
        let flags = [0, libc::XATTR_CREATE, libc::XATTR_REPLACE][rng.below(3)];
        let got = set_xattr(&f, &name, &value, flags);
        let short = short_name(&name);
        // What must happen.
        let want: Result<(), &[i32]> = if name.is_empty() || name.len() > 255 {
            Err(&[libc::ERANGE])
        } else if value.len() > 65536 {
            Err(&[libc::E2BIG])
        } else if name.contains(&0) {
            Err(&[libc::EINVAL])
        } else if name.starts_with(b"security.") || name.starts_with(b"system.") {
            Err(&[libc::EOPNOTSUPP])
        } else if short.is_none() {
            // Any other name is kept in `x-amz-meta-xattr` as s3fs keeps it — except a bare
            // namespace, `user.x-amz-meta-` alone, and names s3fs could not read back.
            let lower = String::from_utf8_lossy(&name).to_ascii_lowercase();
            let exists = others.contains_key(&name);
            if lower == "user." || lower == "trusted." {
                Err(&[libc::EINVAL, libc::EOPNOTSUPP])
            } else if lower.starts_with("user.x-amz-meta-")
                || std::str::from_utf8(&name).map_or(true, |n| !storable_name(n))
            {
                Err(&[libc::EOPNOTSUPP])
            } else if flags == libc::XATTR_CREATE && exists {
                Err(&[libc::EEXIST])
            } else if flags == libc::XATTR_REPLACE && !exists {
                Err(&[libc::ENODATA])
            } else if value.len() > 1500 {
                // base64 makes it 2 KB or more: over what all metadata shares.
                Err(&[libc::E2BIG])
            } else {
                // It fits, or not, depending on everything else kept: either is right, and
                // the model follows what happened.
                Ok(())
            }
        } else {
            match &short {
                None => unreachable!(),
                Some(s) if !token_ok(s) => Err(&[libc::EINVAL]),
                Some(s) => match std::str::from_utf8(&value) {
                    Err(_) => Err(&[libc::EINVAL]),
                    Ok(v) => {
                        let exists = model.contains_key(s);
                        let mut after = model.clone();
                        after.insert(s.clone(), v.to_string());
                        let size: usize = after
                            .iter()
                            .map(|(k, v)| {
                                let m: Metadata = [(k.as_str(), v.as_str())].into_iter().collect();
                                m.encoded_size()
                            })
                            .sum::<usize>()
                            + kept_size(&others);
                        if s.len() + v.len() > 2048 || size > 2048 {
                            Err(&[libc::E2BIG])
                        } else if flags == libc::XATTR_CREATE && exists {
                            Err(&[libc::EEXIST])
                        } else if flags == libc::XATTR_REPLACE && !exists {
                            Err(&[libc::ENODATA])
                        } else {
                            Ok(())
                        }
                    }
                },
            }
        };
        match (&want, &got) {
            (Ok(()), Ok(())) => match short.clone() {
                Some(s) => {
                    model.insert(s, String::from_utf8(value.clone()).unwrap());
                }
                None => {
                    others.insert(name.clone(), value.clone());
                }
            },
            (Ok(()), Err(libc::E2BIG)) if short.is_none() => {}
            (Err(allowed), Err(e)) if allowed.contains(e) => {}
            _ => panic!(
                "setxattr {:?} ({} value bytes, flags {flags}): got {got:?}, want {want:?}",
                String::from_utf8_lossy(&name),
                value.len()
            ),
        }
        *outcomes
            .entry(match got {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("errno {e}"),
            })
            .or_default() += 1;
        // Read back through the mount.
        if others.contains_key(&name) || (short.is_none() && got.is_err() && want.is_ok()) {
            match (get_xattr(&f, &name), others.get(&name)) {
                (Ok(v), Some(want)) => assert_eq!(&v, want),
                (Err(e), None) => assert_eq!(e, libc::ENODATA),
                (other, want) => panic!("getxattr {name:?}: {other:?}, model {want:?}"),
            }
        }
        if let Some(s) = &short {
            if name.len() <= 255 && token_ok(s) {
                match (get_xattr(&f, &name), model.get(s)) {
                    (Ok(v), Some(want)) => assert_eq!(v, want.as_bytes(), "{s}"),
                    (Err(e), None) => assert_eq!(e, libc::ENODATA, "{s}"),
                    (other, want) => panic!("getxattr {s}: {other:?}, model {want:?}"),
                }
            }
        }
    }
    // The object: the model's metadata, its content untouched. Every change also carries the
    // file's times (`ctime`, and the `mtime` it shows), unless they would not fit.
    let head = st.head_object(&obj(&bucket, "f")).unwrap();
    let on_server: BTreeMap<String, String> = head
        .metadata
        .iter()
        .map(|(k, v)| {
            (
                k.trim_start_matches("x-amz-meta-").to_string(),
                v.to_string(),
            )
        })
        .filter(|(k, _)| !matches!(k.as_str(), "ctime" | "mtime") || model.contains_key(k))
        .filter(|(k, _)| k != "xattr")
        .collect();
    assert_eq!(on_server, model);
    let kept: BTreeMap<Vec<u8>, Vec<u8>> = head
        .metadata
        .get("xattr")
        .map(xattr_json::parse)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v))
        .collect();
    assert_eq!(kept, others, "the names kept in x-amz-meta-xattr");
    assert_eq!(
        server_bytes(&st, "f").as_deref(),
        Some(&b"content stays"[..])
    );
    assert!(!m.log().contains("panicked"));
    eprintln!(
        "xattr through the mount: {CASES} inputs fuzzed, outcomes {outcomes:?}, {} names kept in x-amz-meta-xattr at the end",
        others.len()
    );
}
