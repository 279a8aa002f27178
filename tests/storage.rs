//! The `Storage` API against a real (local, signature-checking) S3 server: every seed
//! operation and every request the file system uses, each result checked through a second
//! path where one exists (HEAD and GET after a copy, a listing after a delete, ...).
//!
//! Where moto differs from AWS S3 the test says so (see DESIGN.md §8): it ignores
//! `x-amz-copy-source-if-match`, does not verify payload hashes, cannot store keys with a
//! newline, and answers a HEAD with a wrong signature with an empty 403.

mod common;

use std::fs::File;
use std::io::{Read, Write};

use common::{random_bytes, server, sh, skip_on, ServerLimit};
use s3mount::s3::store::abort_if_open;
use s3mount::s3::xml::ListedObject;
use s3mount::s3::ObjectStore;
use s3mount::s3::{
    CopyRequest, KeyVersion, ListRequest, ObjectRef, Operation, PutOptions, ReplaceMetadata,
    RequestBody, S3Request, TransferConfig,
};
use s3mount::{Headers, Metadata, S3Name, Storage, StorageError};

const MIB: usize = 1024 * 1024;

use common::obj;

fn put_bytes(storage: &Storage, o: &ObjectRef, data: &[u8], opts: &PutOptions) -> String {
    storage
        .bucket(&o.bucket)
        .put(&o.key, RequestBody::Bytes(data), opts)
        .unwrap_or_else(|e| panic!("PUT {o}: {e}"))
        .expect("PUT returns an ETag")
}

fn get_all(storage: &Storage, o: &ObjectRef) -> Vec<u8> {
    let mut got = storage
        .get_object(o, None, None)
        .unwrap_or_else(|e| panic!("GET {o}: {e}"));
    let mut buf = Vec::new();
    got.body.read_to_end(&mut buf).expect("read GET body");
    assert_eq!(
        buf.len() as u64,
        got.content_length,
        "{o}: body vs Content-Length"
    );
    buf
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().map(|(k, v)| (*k, *v)).collect()
}

/// A temp file holding `data`.
fn local_file(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    File::create(&p)
        .and_then(|mut f| f.write_all(data))
        .expect("write local file");
    p
}

/// PUT many small objects in parallel (moto takes ~12 ms per PUT).
fn put_many(storage: &Storage, bucket: &str, keys: &[String]) {
    let chunk = keys.len().div_ceil(8).max(1);
    std::thread::scope(|s| {
        for part in keys.chunks(chunk) {
            s.spawn(move || {
                for k in part {
                    put_bytes(
                        storage,
                        &obj(bucket, k),
                        k.as_bytes(),
                        &PutOptions::default(),
                    );
                }
            });
        }
    });
}

/// The raw ListMultipartUploads reply (Storage has no call for it).
fn list_uploads(storage: &Storage, bucket: &str) -> String {
    let resp = storage
        .client()
        .execute(&S3Request::new(Operation::ListMultipartUploads, bucket, "").query("uploads", ""))
        .unwrap();
    String::from_utf8(resp.read_small_body("ListMultipartUploads").unwrap()).unwrap()
}

fn keys_of(objects: &[ListedObject]) -> Vec<String> {
    objects.iter().map(|o| o.key.clone()).collect()
}

fn is_multipart_etag(etag: &str, parts: u32) -> bool {
    match etag.split_once('-') {
        Some((hex, n)) => {
            hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && n == parts.to_string()
        }
        None => false,
    }
}

// ---- the seed API ----------------------------------------------------------------------------

#[test]
fn seed_write_exists_read_delete() {
    let srv = server();
    let bucket = srv.fresh_bucket("seed-basic");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(100_000, 1);
    let local = local_file(&dir, "example", &data);

    storage
        .write(&local, "example-in-s3", &Headers::new())
        .unwrap();
    let m = storage.exists("example-in-s3").unwrap();
    assert_eq!(m, Some(Metadata::new()), "exists → Some(empty metadata)");

    let back = dir.path().join("example-from-s3");
    let m = storage.read("example-in-s3", &back).unwrap();
    assert!(m.is_empty());
    assert_eq!(std::fs::read(&back).unwrap(), data, "read is byte-exact");
    // Created like any new file (0666 less the umask), not 0600 like a temp file.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&back).unwrap().permissions());
    let umask = sh("umask").stdout;
    let umask = u32::from_str_radix(String::from_utf8_lossy(&umask).trim(), 8).unwrap();
    assert_eq!(mode & 0o777, 0o666 & !umask, "mode {mode:o}");
    // Second path: a plain GET.
    assert_eq!(get_all(&storage, &obj(&bucket, "example-in-s3")), data);
    // No temporary file left beside the download.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    storage.delete("example-in-s3").unwrap();
    assert_eq!(storage.exists("example-in-s3").unwrap(), None);
    let (objects, _) = storage.bucket(&bucket).list_all("", None).unwrap();
    assert!(objects.is_empty(), "{objects:?}");
    // Deleting what is gone is not an error (as in S3).
    storage.delete("example-in-s3").unwrap();
}

#[test]
fn seed_example_with_explicit_bucket_and_metadata() {
    // The seed's second example: S3Name with a bucket other than the default.
    let srv = server();
    let default_bucket = srv.fresh_bucket("seed-default");
    let other = srv.fresh_bucket("seed-other");
    let storage = srv.storage_in(&default_bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = local_file(&dir, "example", b"hello seed\n");

    let mut headers = Headers::new();
    headers.insert("x-amz-meta-state", "unprocessed");
    let remote = S3Name::new("example-in-s3", Some(&other));
    storage.write(&local, &remote, &headers).unwrap();
    let m = storage.exists(&remote).unwrap().expect("exists");
    assert_eq!(m, headers.metadata(), "metadata == headers");
    assert_eq!(
        storage.exists("example-in-s3").unwrap(),
        None,
        "not in the default bucket"
    );

    headers.insert("x-amz-meta-state", "processed");
    storage.update_metadata(&remote, &headers).unwrap();
    let m = storage
        .read(&remote, dir.path().join("example-from-s3"))
        .unwrap();
    assert_eq!(m, headers.metadata());
    assert_eq!(m.get("state"), Some("processed"));
    assert_eq!(
        std::fs::read(dir.path().join("example-from-s3")).unwrap(),
        b"hello seed\n"
    );
}

#[test]
fn metadata_round_trip_ascii_and_non_ascii() {
    if skip_on(ServerLimit::DecodesEncodedMetadata) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("meta");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = local_file(&dir, "f", b"x");
    let values = [
        ("x-amz-meta-state", "unprocessed"),
        ("X-Amz-Meta-Mixed-Case", "Value With Spaces"),
        ("x-amz-meta-latin", "héllo wörld"),
        ("x-amz-meta-cjk", "日本語のテキスト"),
        ("x-amz-meta-emoji", "✓ 🚀"),
        ("x-amz-meta-padded", "  spaces around  "),
        ("x-amz-meta-looks-encoded", "=?UTF-8?B?notreally?="),
        ("x-amz-meta-empty", ""),
    ];
    let headers: Headers = values.iter().copied().collect();
    storage.write(&local, "m.bin", &headers).unwrap();

    let want = meta(&values);
    assert_eq!(storage.exists("m.bin").unwrap().as_ref(), Some(&want));
    let info = storage.head_object(&obj(&bucket, "m.bin")).unwrap();
    assert_eq!(info.metadata, want);
    assert_eq!(info.metadata.get("mixed-case"), Some("Value With Spaces"));
    let m = storage.read("m.bin", dir.path().join("back")).unwrap();
    assert_eq!(m, want);

    // Second path: the raw header as stored is RFC 2047 for non-ASCII, plain for ASCII.
    let resp = storage
        .client()
        .execute(&S3Request::new(Operation::HeadObject, &bucket, "m.bin"))
        .unwrap();
    let raw = |n: &str| resp.header(n).map(str::to_string);
    assert_eq!(raw("x-amz-meta-state").as_deref(), Some("unprocessed"));
    let latin = raw("x-amz-meta-latin").unwrap();
    assert!(
        latin.starts_with("=?UTF-8?B?") && latin.ends_with("?="),
        "{latin}"
    );
    assert!(raw("x-amz-meta-cjk").unwrap().is_ascii());
}

#[test]
fn metadata_refused_before_sending() {
    let srv = server();
    let bucket = srv.fresh_bucket("meta-bad");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = local_file(&dir, "f", b"x");
    let too_big: Headers = [("x-amz-meta-big", "x".repeat(2100))].into_iter().collect();
    let e = storage.write(&local, "big", &too_big).unwrap_err();
    assert!(matches!(e, StorageError::InvalidInput { .. }), "{e}");
    let bad_name: Headers = [("x-amz-meta-bad name", "v")].into_iter().collect();
    assert!(storage.write(&local, "bad", &bad_name).is_err());
    let injected: Headers = [("content-type", "text/plain\r\nx-evil: 1")]
        .into_iter()
        .collect();
    assert!(storage.write(&local, "inj", &injected).is_err());
    let (objects, _) = storage.bucket(&bucket).list_all("", None).unwrap();
    assert!(objects.is_empty(), "nothing was stored: {objects:?}");
}

#[test]
fn write_guesses_content_type_unless_given() {
    let srv = server();
    let bucket = srv.fresh_bucket("ctype");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = local_file(&dir, "f", b"{}");
    storage.write(&local, "a.json", &Headers::new()).unwrap();
    storage.write(&local, "noext", &Headers::new()).unwrap();
    let given: Headers = [("Content-Type", "text/x-custom")].into_iter().collect();
    storage.write(&local, "b.json", &given).unwrap();
    let ct = |k: &str| {
        storage
            .head_object(&obj(&bucket, k))
            .unwrap()
            .content_type()
            .map(str::to_string)
    };
    assert_eq!(ct("a.json").as_deref(), Some("application/json"));
    assert_eq!(ct("noext").as_deref(), Some("application/octet-stream"));
    assert_eq!(ct("b.json").as_deref(), Some("text/x-custom"));
}

#[test]
fn copy_with_headers_sets_destination_metadata() {
    let srv = server();
    let bucket = srv.fresh_bucket("copy-h");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(300_000, 2);
    let local = local_file(&dir, "src", &data);
    let src_headers: Headers = [
        ("x-amz-meta-color", "red"),
        ("x-amz-meta-owner", "alice"),
        ("content-type", "text/x-source"),
    ]
    .into_iter()
    .collect();
    storage.write(&local, "src.txt", &src_headers).unwrap();

    let new: Headers = [("x-amz-meta-color", "blue"), ("x-amz-meta-size", "big")]
        .into_iter()
        .collect();
    storage.copy("src.txt", "dst.txt", &new).unwrap();

    let head = storage.head_object(&obj(&bucket, "dst.txt")).unwrap();
    assert_eq!(
        head.metadata,
        new.metadata(),
        "destination metadata = headers"
    );
    assert_eq!(
        head.metadata.get("owner"),
        None,
        "source metadata not merged in"
    );
    assert_eq!(
        head.content_type(),
        Some("text/x-source"),
        "Content-Type kept"
    );
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(get_all(&storage, &obj(&bucket, "dst.txt")), data);
    // The source is untouched.
    let src = storage.head_object(&obj(&bucket, "src.txt")).unwrap();
    assert_eq!(src.metadata, src_headers.metadata());
    assert_eq!(src.content_type(), Some("text/x-source"));

    // A content header alone: metadata from the source, the new type applied.
    let ct: Headers = [("content-type", "application/x-new")]
        .into_iter()
        .collect();
    storage.copy("src.txt", "dst2.txt", &ct).unwrap();
    let head = storage.head_object(&obj(&bucket, "dst2.txt")).unwrap();
    assert_eq!(head.metadata, src_headers.metadata());
    assert_eq!(head.content_type(), Some("application/x-new"));
    assert_eq!(get_all(&storage, &obj(&bucket, "dst2.txt")), data);
}

#[test]
fn copy_without_headers_keeps_source_metadata() {
    let srv = server();
    let bucket = srv.fresh_bucket("copy-n");
    let other = srv.fresh_bucket("copy-n-other");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(10_000, 3);
    let local = local_file(&dir, "src", &data);
    let src_headers: Headers = [
        ("x-amz-meta-color", "red"),
        ("x-amz-meta-name", "café"),
        ("content-type", "image/png"),
    ]
    .into_iter()
    .collect();
    storage.write(&local, "dir/src.png", &src_headers).unwrap();

    storage
        .copy("dir/src.png", "copy.png", &Headers::new())
        .unwrap();
    // Across buckets too.
    storage
        .copy(
            "dir/src.png",
            S3Name::new("x/copy.png", Some(&other)),
            &Headers::new(),
        )
        .unwrap();
    for o in [obj(&bucket, "copy.png"), obj(&other, "x/copy.png")] {
        let head = storage.head_object(&o).unwrap();
        assert_eq!(head.metadata, src_headers.metadata(), "{o}");
        assert_eq!(head.content_type(), Some("image/png"), "{o}");
        let got = storage.get_object(&o, None, None).unwrap();
        assert_eq!(
            got.info.metadata,
            src_headers.metadata(),
            "{o}: GET metadata"
        );
        assert_eq!(get_all(&storage, &o), data, "{o}");
    }
    // Missing source → NotFound, nothing created.
    let e = storage.copy("nope", "never", &Headers::new()).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(storage.exists("never").unwrap(), None);
}

#[test]
fn update_metadata_keeps_content_and_type() {
    let srv = server();
    let bucket = srv.fresh_bucket("update-meta");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(123_457, 4);
    let local = local_file(&dir, "f", &data);
    let headers: Headers = [
        ("x-amz-meta-state", "unprocessed"),
        ("x-amz-meta-keep", "no"),
        ("content-type", "text/csv"),
        ("cache-control", "max-age=60"),
    ]
    .into_iter()
    .collect();
    storage.write(&local, "data.csv", &headers).unwrap();
    let before = storage.head_object(&obj(&bucket, "data.csv")).unwrap();

    let new: Headers = [("x-amz-meta-state", "processed"), ("x-amz-meta-by", "jörg")]
        .into_iter()
        .collect();
    storage.update_metadata("data.csv", &new).unwrap();

    let after = storage.head_object(&obj(&bucket, "data.csv")).unwrap();
    assert_eq!(
        after.metadata,
        new.metadata(),
        "metadata replaced, not merged"
    );
    assert_eq!(after.content_type(), Some("text/csv"));
    assert!(
        after
            .content_headers
            .contains(&("cache-control".to_string(), "max-age=60".to_string())),
        "{:?}",
        after.content_headers
    );
    assert_eq!(after.size, before.size);
    assert_eq!(get_all(&storage, &obj(&bucket, "data.csv")), data);
    assert_eq!(
        storage.read("data.csv", dir.path().join("b")).unwrap(),
        new.metadata()
    );

    // Removing every metadata entry is a valid update.
    storage
        .update_metadata("data.csv", &Headers::new())
        .unwrap();
    let after = storage.head_object(&obj(&bucket, "data.csv")).unwrap();
    assert!(after.metadata.is_empty(), "{:?}", after.metadata);
    assert_eq!(after.content_type(), Some("text/csv"));
    assert_eq!(get_all(&storage, &obj(&bucket, "data.csv")), data);

    // Missing object → NotFound.
    assert!(storage
        .update_metadata("missing", &new)
        .unwrap_err()
        .is_not_found());
}

/// `write` uploads what `open` and a read to the end would give, or refuses: a directory was
/// sent as a PUT whose body failed to read (retried as a network error, EIO), and a FIFO,
/// whose size is 0, was stored as an empty object while its bytes were never read.
#[test]
fn write_refuses_what_is_not_a_regular_file() {
    let srv = server();
    let bucket = srv.fresh_bucket("write-kind");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();

    let e = storage
        .write(dir.path(), "a-dir", &Headers::new())
        .unwrap_err();
    assert!(matches!(e, StorageError::Io { .. }), "{e:?}");
    assert_eq!(e.errno(), libc::EISDIR, "{e}");
    assert!(
        e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );

    let fifo = dir.path().join("fifo");
    sh(&format!("mkfifo '{}'", fifo.display()));
    // Held open for reading and writing, so that opening it does not block, with bytes in it.
    let mut held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    held.write_all(b"bytes in the pipe").unwrap();
    let e = storage.write(&fifo, "a-fifo", &Headers::new()).unwrap_err();
    assert!(matches!(e, StorageError::InvalidInput { .. }), "{e:?}");
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert!(e.to_string().contains(&fifo.display().to_string()), "{e}");

    let (objects, _) = storage.bucket(&bucket).list_all("", None).unwrap();
    assert!(
        objects.is_empty(),
        "nothing was stored: {:?}",
        keys_of(&objects)
    );
}

/// A local file `read` cannot create fails with its own errno, here ENOENT (tempfile's error
/// carries no OS code, which made it EIO).
#[test]
fn read_into_a_missing_directory_is_enoent() {
    let srv = server();
    let bucket = srv.fresh_bucket("read-nodir");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = local_file(&dir, "f", b"x");
    storage.write(&local, "k", &Headers::new()).unwrap();
    let missing = dir.path().join("no-such-dir");
    let e = storage.read("k", missing.join("out")).unwrap_err();
    assert!(matches!(e, StorageError::Io { .. }), "{e:?}");
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
}

/// Headers the seed calls cannot send are refused before anything is sent, and the error names
/// the object: metadata over S3's 2 KB was found by `update_metadata` only after its HEAD, as
/// "invalid metadata: 3003 bytes ..." naming nothing; `x-amz-meta-` with no name was dropped
/// without a word.
#[test]
fn seed_calls_refuse_bad_headers_naming_the_object() {
    let srv = server();
    let bucket = srv.fresh_bucket("bad-headers");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = local_file(&dir, "f", b"content");
    let keep: Headers = [("x-amz-meta-state", "kept"), ("content-type", "text/plain")]
        .into_iter()
        .collect();
    storage.write(&local, "k", &keep).unwrap();
    let before = storage.head_object(&obj(&bucket, "k")).unwrap();

    let too_big: Headers = [("x-amz-meta-big", "x".repeat(3000))].into_iter().collect();
    let no_name: Headers = [("x-amz-meta-", "v")].into_iter().collect();
    let named = format!("s3://{bucket}/k");
    for (what, headers) in [("too big", &too_big), ("no name", &no_name)] {
        for e in [
            storage.update_metadata("k", headers).unwrap_err(),
            storage.write(&local, "k", headers).unwrap_err(),
            storage.copy("k", "k2", headers).unwrap_err(),
        ] {
            assert!(
                matches!(e, StorageError::InvalidInput { .. }),
                "{what}: {e:?}"
            );
            assert_eq!(e.errno(), libc::EINVAL, "{what}: {e}");
        }
        let e = storage.update_metadata("k", headers).unwrap_err();
        assert!(e.to_string().contains(&named), "{what}: {e}");
        let e = storage.copy("k", "k2", headers).unwrap_err();
        assert!(
            e.to_string().contains(&format!("s3://{bucket}/k2")),
            "{what}: {e}"
        );
    }
    // The update of a missing object with bad headers: the headers are what is wrong.
    let e = storage.update_metadata("missing", &too_big).unwrap_err();
    assert!(matches!(e, StorageError::InvalidInput { .. }), "{e:?}");

    let after = storage.head_object(&obj(&bucket, "k")).unwrap();
    assert_eq!(after.metadata, keep.metadata());
    assert_eq!(after.etag, before.etag);
    assert_eq!(get_all(&storage, &obj(&bucket, "k")), b"content");
    assert_eq!(storage.exists("k2").unwrap(), None);
}

/// A copy onto itself that changes nothing is refused the same way on every server (AWS and
/// moto answer 400 InvalidRequest, which was EIO; Garage copies); with metadata it changes
/// the metadata in place.
#[test]
fn copy_onto_itself() {
    let srv = server();
    let bucket = srv.fresh_bucket("self-copy");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(5_000, 9);
    let local = local_file(&dir, "f", &data);
    let first: Headers = [("x-amz-meta-state", "new"), ("content-type", "text/x-a")]
        .into_iter()
        .collect();
    storage.write(&local, "same", &first).unwrap();

    let e = storage.copy("same", "same", &Headers::new()).unwrap_err();
    assert!(matches!(e, StorageError::InvalidInput { .. }), "{e:?}");
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    assert!(
        e.to_string().contains(&format!("s3://{bucket}/same")),
        "{e}"
    );
    let remote = S3Name::new("same", Some(&bucket));
    assert!(matches!(
        storage.copy(&remote, "same", &Headers::new()),
        Err(StorageError::InvalidInput { .. })
    ));
    // A missing source is reported as such.
    assert!(storage
        .copy("gone", "gone", &Headers::new())
        .unwrap_err()
        .is_not_found());

    let second: Headers = [("x-amz-meta-state", "done")].into_iter().collect();
    storage.copy("same", "same", &second).unwrap();
    let head = storage.head_object(&obj(&bucket, "same")).unwrap();
    assert_eq!(head.metadata, second.metadata());
    assert_eq!(
        head.content_type(),
        Some("text/x-a"),
        "content headers kept"
    );
    assert_eq!(get_all(&storage, &obj(&bucket, "same")), data);
}

// ---- large transfers --------------------------------------------------------------------------

#[test]
fn write_20mib_goes_multipart() {
    let srv = server();
    let bucket = srv.fresh_bucket("mpu-write");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(20 * MIB + 12_345, 5);
    let local = local_file(&dir, "big", &data);
    let headers: Headers = [
        ("x-amz-meta-kind", "big"),
        ("content-type", "application/x-big"),
    ]
    .into_iter()
    .collect();
    storage.write(&local, "big.bin", &headers).unwrap();

    let head = storage.head_object(&obj(&bucket, "big.bin")).unwrap();
    // 16 MiB threshold, 8 MiB parts → 3 parts.
    let etag = head.etag.clone().unwrap();
    assert!(
        is_multipart_etag(&etag, 3),
        "multipart ETag expected, got {etag}"
    );
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(
        head.metadata,
        headers.metadata(),
        "CreateMultipartUpload carried metadata"
    );
    assert_eq!(head.content_type(), Some("application/x-big"));

    let back = dir.path().join("back");
    let m = storage.read("big.bin", &back).unwrap();
    assert_eq!(m, headers.metadata());
    assert!(
        std::fs::read(&back).unwrap() == data,
        "read back byte-exact"
    );
    assert!(get_all(&storage, &obj(&bucket, "big.bin")) == data);
}

#[test]
fn put_file_multipart_with_small_parts() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("mpu-put-file");
    let storage = srv.storage().with_transfer(TransferConfig {
        multipart_threshold: 6 * MIB as u64,
        part_size: 5 * MIB as u64,
        parallelism: 3,
        ..TransferConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(20 * MIB, 6);
    let path = local_file(&dir, "big", &data);
    let file = File::open(&path).unwrap();
    let o = obj(&bucket, "dir/big.bin");
    let opts = PutOptions {
        metadata: meta(&[("mtime", "1700000000.5")]),
        content_headers: vec![("content-type".into(), "application/octet-stream".into())],
        ..PutOptions::default()
    };
    let etag = storage
        .bucket(&o.bucket)
        .put_file(&o.key, &file, data.len() as u64, &opts)
        .unwrap()
        .expect("ETag");
    assert!(is_multipart_etag(&etag, 4), "{etag}");
    let head = storage.head_object(&o).unwrap();
    assert_eq!(head.etag.as_deref(), Some(etag.as_str()));
    assert_eq!(head.metadata.get("mtime"), Some("1700000000.5"));
    assert!(get_all(&storage, &o) == data);

    // No upload left in progress.
    let pending = list_uploads(&storage, &bucket);
    assert!(!pending.contains("<Upload>"), "{pending}");

    // Below the threshold: a single PUT (plain MD5 ETag).
    let small = &data[..MIB];
    let path = local_file(&dir, "small", small);
    let file = File::open(&path).unwrap();
    let etag = storage
        .bucket(&bucket)
        .put_file("small", &file, small.len() as u64, &PutOptions::default())
        .unwrap()
        .unwrap();
    assert!(!etag.contains('-'), "{etag}");
    use md5::Digest;
    assert_eq!(etag, hex::encode(md5::Md5::digest(small)));
}

/// File bodies to a loopback server go unsigned by default (`PayloadSigning::Auto`); signed,
/// as they are over plain HTTP to any other host, the server checks the body's SHA-256 and
/// the upload is the same, single PUT and multipart parts alike.
#[test]
fn file_bodies_signed_or_not_upload_the_same_bytes() {
    use s3mount::s3::{ClientConfig, PayloadSigning, S3Client};
    let srv = server();
    let bucket = srv.fresh_bucket("signed-bodies");
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(13 * MIB + 5, 8);
    let path = local_file(&dir, "body", &data);
    for signing in [PayloadSigning::Auto, PayloadSigning::Always] {
        let mut cfg = ClientConfig::from_config(&srv.config(None));
        cfg.payload_signing = signing;
        let storage =
            Storage::with_client(S3Client::new(cfg).unwrap(), None).with_transfer(TransferConfig {
                multipart_threshold: 6 * MIB as u64,
                part_size: 5 * MIB as u64,
                ..TransferConfig::default()
            });
        let file = File::open(&path).unwrap();
        for (key, len) in [("one", MIB), ("parts", data.len())] {
            let key = format!("{signing:?}/{key}");
            storage
                .bucket(&bucket)
                .put_file(&key, &file, len as u64, &PutOptions::default())
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(
                get_all(&storage, &obj(&bucket, &key)) == data[..len],
                "{key} read back"
            );
        }
    }
}

#[test]
fn multipart_copy_is_byte_exact_and_keeps_metadata() {
    let srv = server();
    let bucket = srv.fresh_bucket("mpu-copy");
    let storage = srv.storage_in(&bucket).with_transfer(TransferConfig {
        copy_threshold: 6 * MIB as u64,
        copy_part_size: 5 * MIB as u64,
        ..TransferConfig::default()
    });
    let data = random_bytes(12 * MIB + 777, 7);
    let src = obj(&bucket, "src/big.bin");
    let opts = PutOptions {
        metadata: meta(&[("color", "red"), ("name", "naïve")]),
        content_headers: vec![("content-type".into(), "video/mp4".into())],
        ..PutOptions::default()
    };
    let src_etag = put_bytes(&storage, &src, &data, &opts);
    assert!(!src_etag.contains('-'));

    // CopyObject request with COPY semantics, size unknown (HEAD decides).
    let dst = obj(&bucket, "dst/copy one.bin");
    let r = storage
        .bucket(&bucket)
        .copy(&CopyRequest {
            src: src.clone(),
            dst: dst.clone(),
            replace: None,
            if_match: Some(src_etag.clone()),
            size: None,
            storage_class: None,
        })
        .unwrap();
    let etag = r.etag.expect("ETag of the completed copy");
    assert!(
        is_multipart_etag(&etag, 3),
        "multipart copy expected, got {etag}"
    );
    let head = storage.head_object(&dst).unwrap();
    assert_eq!(head.etag.as_deref(), Some(etag.as_str()));
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(head.metadata, opts.metadata);
    assert_eq!(head.content_type(), Some("video/mp4"));
    assert!(get_all(&storage, &dst) == data);

    // REPLACE semantics through the multipart path.
    let dst2 = obj(&bucket, "dst/two.bin");
    storage
        .bucket(&bucket)
        .copy(&CopyRequest {
            src: src.clone(),
            dst: dst2.clone(),
            replace: Some(ReplaceMetadata {
                metadata: meta(&[("state", "new")]),
                content_headers: vec![("content-type".into(), "video/webm".into())],
            }),
            if_match: None,
            size: Some(data.len() as u64),
            storage_class: None,
        })
        .unwrap();
    let head = storage.head_object(&dst2).unwrap();
    assert_eq!(head.metadata, meta(&[("state", "new")]));
    assert_eq!(head.content_type(), Some("video/webm"));
    assert!(get_all(&storage, &dst2) == data);

    // The seed's copy and update_metadata on the same storage go multipart too.
    storage
        .copy("src/big.bin", "seed-copy.bin", &Headers::new())
        .unwrap();
    let head = storage.head_object(&obj(&bucket, "seed-copy.bin")).unwrap();
    assert!(is_multipart_etag(head.etag.as_deref().unwrap(), 3));
    assert_eq!(head.metadata, opts.metadata);
    let new: Headers = [("x-amz-meta-state", "done")].into_iter().collect();
    storage.update_metadata("seed-copy.bin", &new).unwrap();
    let head = storage.head_object(&obj(&bucket, "seed-copy.bin")).unwrap();
    assert_eq!(head.metadata, new.metadata());
    assert_eq!(head.content_type(), Some("video/mp4"));
    assert!(get_all(&storage, &obj(&bucket, "seed-copy.bin")) == data);
}

#[test]
fn aborted_multipart_upload_leaves_no_object() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("mpu-abort");
    let storage = srv.storage();
    let o = obj(&bucket, "aborted.bin");
    let id = storage
        .create_multipart_upload(&o, &PutOptions::default())
        .unwrap();
    let part = random_bytes(5 * MIB, 8);
    let etag = storage
        .upload_part(&o, &id, 1, RequestBody::Bytes(&part))
        .unwrap();
    assert!(!etag.is_empty());
    assert!(
        list_uploads(&storage, &bucket).contains(&id),
        "upload listed while open"
    );
    storage.abort_multipart_upload(&o, &id).unwrap();

    let e = storage.head_object(&o).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let (objects, _) = storage.bucket(&bucket).list_all("", None).unwrap();
    assert!(objects.is_empty(), "{objects:?}");
    // The upload itself is gone, and aborting again is fine.
    let pending = list_uploads(&storage, &bucket);
    assert!(!pending.contains("<Upload>"), "{pending}");
    abort_if_open(&storage, &o, &id).unwrap();
    assert!(storage.head_object(&o).unwrap_err().is_not_found());
    // Not tested: CompleteMultipartUpload / UploadPart after the abort. AWS answers 404
    // NoSuchUpload; moto 5.2.5 raises KeyError → 500 (and the client retries the 500).
}

#[test]
fn manual_multipart_upload_and_part_copy() {
    let srv = server();
    let bucket = srv.fresh_bucket("mpu-manual");
    let storage = srv.storage();
    let src = obj(&bucket, "src");
    let head_part = random_bytes(5 * MIB, 9);
    put_bytes(&storage, &src, &head_part, &PutOptions::default());
    let o = obj(&bucket, "assembled");
    let id = storage
        .create_multipart_upload(
            &o,
            &PutOptions {
                metadata: meta(&[("k", "v")]),
                ..PutOptions::default()
            },
        )
        .unwrap();
    let p1 = storage
        .upload_part_copy(&o, &id, 1, &src, (0, head_part.len() as u64), None)
        .unwrap();
    let p2 = storage
        .upload_part(&o, &id, 2, RequestBody::Bytes(b"tail"))
        .unwrap();
    let done = storage
        .complete_multipart_upload(&o, &id, &[(1, p1), (2, p2)], &PutOptions::default())
        .unwrap();
    assert!(is_multipart_etag(done.etag.as_deref().unwrap(), 2));
    let mut want = head_part.clone();
    want.extend_from_slice(b"tail");
    assert!(get_all(&storage, &o) == want);
    assert_eq!(
        storage.head_object(&o).unwrap().metadata.get("k"),
        Some("v")
    );
}

// ---- reads --------------------------------------------------------------------------------------

#[test]
fn read_range_middle_and_past_end() {
    let srv = server();
    let bucket = srv.fresh_bucket("range");
    let storage = srv.storage();
    let data = random_bytes(1_000_000, 10);
    let o = obj(&bucket, "r.bin");
    let etag = put_bytes(&storage, &o, &data, &PutOptions::default());

    let mut buf = vec![0u8; 4096];
    let (n, got_etag) = storage
        .bucket(&o.bucket)
        .read_range(&o.key, 500_000, &mut buf, None)
        .unwrap();
    assert_eq!(n, 4096);
    assert_eq!(&buf[..], &data[500_000..504_096]);
    assert_eq!(got_etag.as_deref(), Some(etag.as_str()));

    // Pinned to the right ETag.
    let (n, _) = storage
        .bucket(&o.bucket)
        .read_range(&o.key, 0, &mut buf, Some(&etag))
        .unwrap();
    assert_eq!(n, 4096);
    assert_eq!(&buf[..], &data[..4096]);

    // Straddling the end: only what exists.
    let (n, _) = storage
        .bucket(&o.bucket)
        .read_range(&o.key, 999_000, &mut buf, None)
        .unwrap();
    assert_eq!(n, 1000);
    assert_eq!(&buf[..n], &data[999_000..]);

    // Entirely past the end (S3: 416): zero bytes, not an error.
    let (n, _) = storage
        .bucket(&o.bucket)
        .read_range(&o.key, 2_000_000, &mut buf, None)
        .unwrap();
    assert_eq!(n, 0);
    let (n, _) = storage
        .bucket(&o.bucket)
        .read_range(&o.key, data.len() as u64, &mut buf, None)
        .unwrap();
    assert_eq!(n, 0);

    // get_object with a range: 206 with the total size.
    let mut g = storage.get_object(&o, Some((10, 20)), Some(&etag)).unwrap();
    assert_eq!(g.content_length, 10);
    assert_eq!(g.total_size, data.len() as u64);
    assert_eq!(g.info.size, data.len() as u64);
    let mut part = Vec::new();
    g.body.read_to_end(&mut part).unwrap();
    assert_eq!(part, &data[10..20]);
    // An empty or reversed range is refused before sending.
    assert!(matches!(
        storage.get_object(&o, Some((20, 20)), None),
        Err(StorageError::InvalidInput { .. })
    ));
}

#[test]
fn empty_object_and_directory_marker() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("empty");
    let storage = srv.storage_in(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = local_file(&dir, "empty", b"");
    storage.write(&local, "empty.txt", &Headers::new()).unwrap();
    let o = obj(&bucket, "empty.txt");
    assert_eq!(storage.head_object(&o).unwrap().size, 0);
    let back = dir.path().join("back");
    storage.read("empty.txt", &back).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"");
    let mut buf = [0u8; 16];
    assert_eq!(
        storage
            .bucket(&o.bucket)
            .read_range(&o.key, 0, &mut buf, None)
            .unwrap()
            .0,
        0
    );

    // A directory marker: zero bytes, key ending in '/'.
    let marker = obj(&bucket, "dir/");
    put_bytes(&storage, &marker, b"", &PutOptions::default());
    put_bytes(
        &storage,
        &obj(&bucket, "dir/child"),
        b"c",
        &PutOptions::default(),
    );
    let (objects, prefixes) = storage.bucket(&bucket).list_all("", Some("/")).unwrap();
    assert_eq!(keys_of(&objects), vec!["empty.txt".to_string()]);
    assert_eq!(prefixes, vec!["dir/".to_string()]);
    let (objects, _) = storage.bucket(&bucket).list_all("dir/", Some("/")).unwrap();
    assert_eq!(
        keys_of(&objects),
        vec!["dir/".to_string(), "dir/child".to_string()]
    );
    assert_eq!(storage.head_object(&marker).unwrap().size, 0);
}

#[test]
fn get_with_wrong_if_match_is_precondition_failed() {
    let srv = server();
    let bucket = srv.fresh_bucket("if-match");
    let storage = srv.storage();
    let o = obj(&bucket, "k");
    let etag = put_bytes(&storage, &o, b"version 1", &PutOptions::default());
    let wrong = "0123456789abcdef0123456789abcdef";
    let e = storage.get_object(&o, None, Some(wrong)).unwrap_err();
    assert!(matches!(e, StorageError::PreconditionFailed { .. }), "{e}");
    assert!(e.is_precondition_failed());
    assert_eq!(e.errno(), libc::EIO);
    let e = storage
        .get_object(&o, Some((0, 3)), Some(wrong))
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    let mut buf = [0u8; 4];
    assert!(storage
        .bucket(&o.bucket)
        .read_range(&o.key, 0, &mut buf, Some(wrong))
        .unwrap_err()
        .is_precondition_failed());
    // The right ETag works.
    let mut g = storage.get_object(&o, None, Some(&etag)).unwrap();
    let mut body = Vec::new();
    g.body.read_to_end(&mut body).unwrap();
    assert_eq!(body, b"version 1");
    // After an overwrite the old ETag no longer matches.
    put_bytes(&storage, &o, b"version 2", &PutOptions::default());
    assert!(storage
        .get_object(&o, None, Some(&etag))
        .unwrap_err()
        .is_precondition_failed());
}

// ---- conditional writes -------------------------------------------------------------------------

#[test]
fn put_if_none_match_on_existing_key_is_precondition_failed() {
    if skip_on(ServerLimit::IgnoresIfNoneMatch) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("if-none-match");
    let storage = srv.storage();
    let o = obj(&bucket, "k");
    let excl = PutOptions {
        if_none_match_any: true,
        ..PutOptions::default()
    };
    let etag = put_bytes(&storage, &o, b"first", &excl);
    let e = storage
        .bucket(&o.bucket)
        .put(&o.key, RequestBody::Bytes(b"second"), &excl)
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    assert_eq!(get_all(&storage, &o), b"first", "not overwritten");

    // If-Match: wrong → 412, right → overwrite.
    let wrong = PutOptions {
        if_match: Some("0123456789abcdef0123456789abcdef".into()),
        ..PutOptions::default()
    };
    assert!(storage
        .bucket(&o.bucket)
        .put(&o.key, RequestBody::Bytes(b"third"), &wrong)
        .unwrap_err()
        .is_precondition_failed());
    let right = PutOptions {
        if_match: Some(etag),
        ..PutOptions::default()
    };
    put_bytes(&storage, &o, b"fourth", &right);
    assert_eq!(get_all(&storage, &o), b"fourth");
}

#[test]
fn put_file_multipart_honours_if_none_match() {
    if skip_on(ServerLimit::NoListMultipartUploads) || skip_on(ServerLimit::IgnoresIfNoneMatch) {
        return;
    }
    // O_EXCL creates of large files rely on this: the condition must reach
    // CompleteMultipartUpload, not be dropped on the multipart path.
    let srv = server();
    let bucket = srv.fresh_bucket("mpu-excl");
    let storage = srv.storage().with_transfer(TransferConfig {
        multipart_threshold: 6 * MIB as u64,
        part_size: 5 * MIB as u64,
        ..TransferConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(11 * MIB, 11);
    let path = local_file(&dir, "big", &data);
    let file = File::open(&path).unwrap();
    let o = obj(&bucket, "excl.bin");
    let excl = PutOptions {
        if_none_match_any: true,
        ..PutOptions::default()
    };
    let etag = storage
        .bucket(&o.bucket)
        .put_file(&o.key, &file, data.len() as u64, &excl)
        .unwrap()
        .unwrap();
    assert!(is_multipart_etag(&etag, 3), "{etag}");
    let e = storage
        .bucket(&o.bucket)
        .put_file(&o.key, &file, data.len() as u64, &excl)
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    assert_eq!(
        storage.head_object(&o).unwrap().etag.as_deref(),
        Some(etag.as_str()),
        "not overwritten"
    );
    let pending = list_uploads(&storage, &bucket);
    assert!(
        !pending.contains("<Upload>"),
        "refused upload aborted: {pending}"
    );
}

// ---- listing --------------------------------------------------------------------------------------

#[test]
fn list_2500_keys_across_pages() {
    let srv = server();
    let bucket = srv.fresh_bucket("list-many");
    let storage = srv.storage();
    let mut keys: Vec<String> = (0..2500).map(|i| format!("many/k{i:05}")).collect();
    keys.push("other/x".to_string());
    put_many(&storage, &bucket, &keys);
    let mut many: Vec<String> = keys[..2500].to_vec();
    many.sort();

    let (objects, prefixes) = storage.bucket(&bucket).list_all("many/", None).unwrap();
    assert!(prefixes.is_empty());
    assert_eq!(keys_of(&objects), many);
    assert!(objects.iter().all(|o| o.size == o.key.len() as u64));
    assert!(objects
        .iter()
        .all(|o| o.etag.is_some() && o.last_modified.is_some()));

    // Manual continuation, 1000 per page.
    let mut req = ListRequest {
        prefix: "many/".into(),
        ..ListRequest::default()
    };
    let mut pages = Vec::new();
    loop {
        let page = storage.list_objects_v2(&bucket, &req).unwrap();
        pages.push(page.objects.len());
        if !page.is_truncated {
            break;
        }
        req.continuation_token = Some(page.next_continuation_token.expect("token"));
    }
    assert_eq!(pages, vec![1000, 1000, 500]);

    // Small pages with max_keys.
    let page = storage
        .list_objects_v2(
            &bucket,
            &ListRequest {
                prefix: "many/".into(),
                max_keys: Some(7),
                ..ListRequest::default()
            },
        )
        .unwrap();
    assert_eq!(keys_of(&page.objects), many[..7].to_vec());
    assert!(page.is_truncated);

    // start_after.
    let page = storage
        .list_objects_v2(
            &bucket,
            &ListRequest {
                prefix: "many/".into(),
                start_after: Some("many/k02490".into()),
                ..ListRequest::default()
            },
        )
        .unwrap();
    assert_eq!(keys_of(&page.objects), many[2491..].to_vec());
    assert!(!page.is_truncated);
    let page = storage
        .list_objects_v2(
            &bucket,
            &ListRequest {
                start_after: Some("zzz".into()),
                ..ListRequest::default()
            },
        )
        .unwrap();
    assert!(page.objects.is_empty());

    // Delimiter: the two top-level prefixes, no objects.
    let (objects, prefixes) = storage.bucket(&bucket).list_all("", Some("/")).unwrap();
    assert!(objects.is_empty(), "{objects:?}");
    assert_eq!(prefixes, vec!["many/".to_string(), "other/".to_string()]);
}

#[test]
fn delete_objects_1500_keys() {
    let srv = server();
    let bucket = srv.fresh_bucket("delete-many");
    let storage = srv.storage();
    let mut keys: Vec<String> = (0..1500).map(|i| format!("d/{i:04} ü&<x>")).collect();
    put_many(&storage, &bucket, &keys);
    put_bytes(
        &storage,
        &obj(&bucket, "keep"),
        b"k",
        &PutOptions::default(),
    );
    let (objects, _) = storage.bucket(&bucket).list_all("d/", None).unwrap();
    assert_eq!(objects.len(), 1500);

    // Plus keys that do not exist: S3 reports them deleted too.
    keys.push("d/never-existed".into());
    let versions: Vec<KeyVersion> = keys.into_iter().map(KeyVersion::from).collect();
    let r = storage.bucket(&bucket).delete_many(&versions).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let (objects, _) = storage.bucket(&bucket).list_all("", None).unwrap();
    assert_eq!(keys_of(&objects), vec!["keep".to_string()]);
    assert!(storage
        .bucket(&bucket)
        .delete_many(&[])
        .unwrap()
        .errors
        .is_empty());
}

#[test]
fn special_character_keys_round_trip() {
    if skip_on(ServerLimit::KeysAreFileNames) || skip_on(ServerLimit::ListingKeysNotEncoded) {
        return;
    }
    // moto cannot store a key with a newline (AWS can), so none here.
    keys_round_trip(
        "keys",
        &[
            "with space.txt",
            "dir with space/file name",
            "ünïcödé/日本語.txt",
            "emoji 🚀.bin",
            "plus+sign",
            "per%cent%20not-an-escape",
            "hash#tag",
            "what?q=1&r=2",
            "amp&and;semi",
            "double//slash",
            "trailing-slash-dir/",
            "tab\tkey",
            "xml<&>\"'chars",
            "equals=and,comma:colon@at$dollar",
            "tilde~under_score-dash.dot",
            "brackets[1]{2}(3)",
            "back\\slash",
            "^caret`backtick|pipe",
            // Dot segments are keys of their own, never resolved as a path's would be.
            "dot/./seg",
            "dot/../seg",
            "..",
            ".",
        ],
        &[
            "dot/",
            "dir with space/",
            "ünïcödé/",
            "double/",
            "trailing-slash-dir/",
        ],
    );
}

/// A key with a leading `/` (sent as `PUT /bucket//leading-slash`) is a key of its own, listed
/// under the common prefix `/`.
#[test]
fn a_key_with_a_leading_slash_round_trips() {
    if skip_on(ServerLimit::KeysAreFileNames) || skip_on(ServerLimit::DropsLeadingSlash) {
        return;
    }
    keys_round_trip("lead-slash", &["/leading-slash", "plain"], &["/"]);
}

/// Each of `keys` through PUT (with metadata), HEAD, GET, listings (each of `prefixes` is a
/// common prefix of the delimited listing and lists exactly the keys under it), copy (to
/// another special name) and DELETE, in a fresh bucket.
fn keys_round_trip(bucket_hint: &str, keys: &[&str], prefixes: &[&str]) {
    let srv = server();
    let bucket = srv.fresh_bucket(bucket_hint);
    let storage = srv.storage();
    for (i, k) in keys.iter().enumerate() {
        let o = obj(&bucket, k);
        let body = format!("body of {k}");
        let opts = PutOptions {
            metadata: meta(&[("n", &i.to_string())]),
            ..PutOptions::default()
        };
        put_bytes(&storage, &o, body.as_bytes(), &opts);
        let head = storage
            .head_object(&o)
            .unwrap_or_else(|e| panic!("HEAD {k:?}: {e}"));
        assert_eq!(head.size, body.len() as u64, "{k:?}");
        assert_eq!(
            head.metadata.get("n"),
            Some(i.to_string().as_str()),
            "{k:?}"
        );
        assert_eq!(get_all(&storage, &o), body.as_bytes(), "{k:?}");
    }
    let sorted = |keys: &mut dyn Iterator<Item = &&str>| -> Vec<String> {
        let mut v: Vec<String> = keys.map(|k| k.to_string()).collect();
        v.sort();
        v
    };
    let (objects, _) = storage.bucket(&bucket).list_all("", None).unwrap();
    assert_eq!(keys_of(&objects), sorted(&mut keys.iter()));

    // Prefix and delimiter listings with special characters.
    let (_, listed_prefixes) = storage.bucket(&bucket).list_all("", Some("/")).unwrap();
    for p in prefixes {
        assert!(
            listed_prefixes.contains(&p.to_string()),
            "{p:?} not in {listed_prefixes:?}"
        );
        let (objects, _) = storage.bucket(&bucket).list_all(p, None).unwrap();
        assert_eq!(
            keys_of(&objects),
            sorted(&mut keys.iter().filter(|k| k.starts_with(p))),
            "under {p:?}"
        );
    }

    // Copy each (source and destination special), then delete both.
    for k in keys {
        let src = obj(&bucket, k);
        let dst = obj(&bucket, &format!("copies/{k} copy?#"));
        storage
            .bucket(&bucket)
            .copy(&CopyRequest {
                src: src.clone(),
                dst: dst.clone(),
                replace: None,
                if_match: None,
                size: None,
                storage_class: None,
            })
            .unwrap_or_else(|e| panic!("copy {k:?}: {e}"));
        assert_eq!(
            get_all(&storage, &dst),
            format!("body of {k}").as_bytes(),
            "{k:?}"
        );
        storage.delete_object(&src).unwrap();
        storage.delete_object(&dst).unwrap();
        assert!(
            storage.head_object(&src).unwrap_err().is_not_found(),
            "{k:?}"
        );
        assert!(
            storage.head_object(&dst).unwrap_err().is_not_found(),
            "{k:?}"
        );
    }
    let (objects, _) = storage.bucket(&bucket).list_all("", None).unwrap();
    assert!(objects.is_empty(), "{:?}", keys_of(&objects));
}

// ---- errors -------------------------------------------------------------------------------------

#[test]
fn missing_key_is_not_found() {
    let srv = server();
    let bucket = srv.fresh_bucket("missing-key");
    let storage = srv.storage_in(&bucket);
    let o = obj(&bucket, "no/such key");
    for e in [
        storage.head_object(&o).unwrap_err(),
        storage.get_object(&o, None, None).unwrap_err(),
        storage.get_object(&o, Some((0, 10)), None).unwrap_err(),
        storage
            .read("no/such key", tempfile::tempdir().unwrap().path().join("x"))
            .unwrap_err(),
    ] {
        assert!(matches!(e, StorageError::NotFound { .. }), "{e:?}");
        assert_eq!(e.errno(), libc::ENOENT, "{e}");
        assert!(e.to_string().contains("no/such key"), "{e}");
    }
    let e = storage.get_object(&o, None, None).unwrap_err();
    assert!(
        matches!(&e, StorageError::NotFound { code: Some(c), .. } if c == "NoSuchKey"),
        "{e:?}"
    );
    let mut buf = [0u8; 8];
    assert!(storage
        .bucket(&o.bucket)
        .read_range(&o.key, 0, &mut buf, None)
        .unwrap_err()
        .is_not_found());
    assert_eq!(storage.exists("no/such key").unwrap(), None);
    // A failed read leaves no local file.
    let dir = tempfile::tempdir().unwrap();
    let _ = storage.read("no/such key", dir.path().join("x"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn missing_bucket_is_no_such_bucket() {
    if skip_on(ServerLimit::MissingBucketIsNoSuchKey) {
        return;
    }
    let srv = server();
    let storage = srv.storage();
    let name = "t-no-such-bucket-here";
    let e = storage.head_bucket(name).unwrap_err();
    assert!(
        matches!(&e, StorageError::NoSuchBucket { bucket } if bucket == name),
        "{e:?}"
    );
    assert!(e.to_string().contains("NoSuchBucket"), "{e}");
    assert_eq!(e.errno(), libc::ENOENT);
    let e = storage
        .list_objects_v2(name, &ListRequest::default())
        .unwrap_err();
    assert!(
        matches!(&e, StorageError::NoSuchBucket { bucket } if bucket == name),
        "{e:?}"
    );
    let e = storage.bucket(name).list_all("", Some("/")).unwrap_err();
    assert!(matches!(e, StorageError::NoSuchBucket { .. }), "{e:?}");
    let e = storage.get_object(&obj(name, "k"), None, None).unwrap_err();
    assert!(matches!(e, StorageError::NoSuchBucket { .. }), "{e:?}");
    let dir = tempfile::tempdir().unwrap();
    let local = local_file(&dir, "f", b"x");
    let e = storage
        .write(&local, S3Name::new("k", Some(name)), &Headers::new())
        .unwrap_err();
    assert!(matches!(e, StorageError::NoSuchBucket { .. }), "{e:?}");
    // HEAD of a key in a missing bucket is a bare 404 (no body, on AWS too), so `exists`
    // cannot tell it from a missing key: it answers None.
    assert_eq!(storage.exists(S3Name::new("k", Some(name))).unwrap(), None);
    // An existing bucket answers HEAD.
    let b = srv.fresh_bucket("exists");
    storage.head_bucket(&b).unwrap();
    storage.delete_bucket(&b).unwrap();
    assert!(matches!(
        storage.head_bucket(&b),
        Err(StorageError::NoSuchBucket { .. })
    ));
}

#[test]
fn wrong_secret_is_signature_does_not_match() {
    if skip_on(ServerLimit::BadSignatureIsAccessDenied) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("wrong-secret");
    let good = srv.storage();
    put_bytes(&good, &obj(&bucket, "k"), b"v", &PutOptions::default());
    let bad =
        Storage::new(&srv.config_with(None, "not-the-secret-key-at-all-0000000000000000")).unwrap();
    let e = bad
        .list_objects_v2(&bucket, &ListRequest::default())
        .unwrap_err();
    match &e {
        StorageError::AccessDenied { code, action, .. } => {
            assert_eq!(code, "SignatureDoesNotMatch", "{e}");
            assert_eq!(*action, Some("s3:ListBucket"));
        }
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    assert_eq!(e.errno(), libc::EACCES);
    assert!(
        !e.to_string().contains("not-the-secret"),
        "secret in message: {e}"
    );
    let e = bad.get_object(&obj(&bucket, "k"), None, None).unwrap_err();
    assert!(
        matches!(&e, StorageError::AccessDenied { code, .. } if code == "SignatureDoesNotMatch"),
        "{e:?}"
    );
    let e = bad
        .bucket(&bucket)
        .put("k", RequestBody::Bytes(b"evil"), &PutOptions::default())
        .unwrap_err();
    assert!(matches!(e, StorageError::AccessDenied { .. }), "{e:?}");
    // HEAD: 403 without a body, so only the status is known.
    let e = bad.head_object(&obj(&bucket, "k")).unwrap_err();
    assert!(matches!(e, StorageError::AccessDenied { .. }), "{e:?}");
    assert_eq!(e.errno(), libc::EACCES);
    // Nothing changed.
    assert_eq!(get_all(&good, &obj(&bucket, "k")), b"v");
}

#[test]
fn no_bucket_and_no_default_is_an_error() {
    let srv = server();
    let storage = srv.storage();
    assert_eq!(storage.default_bucket(), None);
    let dir = tempfile::tempdir().unwrap();
    let local = local_file(&dir, "f", b"x");
    let check = |e: StorageError| {
        assert!(
            matches!(&e, StorageError::NoBucket { key } if key == "k"),
            "{e:?}"
        );
        assert_eq!(e.errno(), libc::EINVAL);
    };
    check(storage.exists("k").unwrap_err());
    check(storage.write(&local, "k", &Headers::new()).unwrap_err());
    check(storage.read("k", dir.path().join("out")).unwrap_err());
    check(storage.delete(S3Name::new("k", None)).unwrap_err());
    check(storage.update_metadata("k", &Headers::new()).unwrap_err());
    check(storage.copy("k", "k2", &Headers::new()).unwrap_err());
    // An explicit bucket works without a default.
    let bucket = srv.fresh_bucket("no-default");
    storage
        .write(&local, S3Name::new("k", Some(&bucket)), &Headers::new())
        .unwrap();
    assert!(storage
        .exists(S3Name::new("k", Some(&bucket)))
        .unwrap()
        .is_some());
    // Empty keys are refused before sending.
    assert!(matches!(
        storage.exists(S3Name::new("", Some(&bucket))),
        Err(StorageError::InvalidInput { .. })
    ));
}

#[test]
fn config_file_loads_and_works() {
    let srv = server();
    let bucket = srv.fresh_bucket("config-file");
    let (_dir, path) = srv.config_file(&bucket);
    let config = s3mount::Config::load(&s3mount::config::LoadRequest {
        env: &|_: &str| None,
        ..s3mount::config::LoadRequest::from_file(&path)
    })
    .unwrap();
    assert_eq!(config.default_bucket.as_deref(), Some(bucket.as_str()));
    let storage = Storage::new(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = local_file(&dir, "f", b"via yaml");
    storage.write(&local, "from-yaml", &Headers::new()).unwrap();
    assert_eq!(
        get_all(&srv.storage(), &obj(&bucket, "from-yaml")),
        b"via yaml"
    );
}
