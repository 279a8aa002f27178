//! Injected failures: what the HTTP client reports after its own retries (the store's
//! `fail_next`), and the bursts the loops above it ride out.

use super::*;
use crate::s3::memory::Failure;

const SLOW_DOWN: Failure = Failure::Status(503, "SlowDown");
const INTERNAL: Failure = Failure::Status(500, "InternalError");

#[test]
fn a_burst_of_503_on_a_conditional_put_is_ridden_out() {
    let fx = fx();
    fx.store.fail_next(Operation::PutObject, 3, SLOW_DOWN);
    fx.create_excl("f", b"data").unwrap();
    assert_eq!(fx.data("f"), b"data");
    assert_eq!(fx.count(Operation::PutObject), 4);
    assert_eq!(fx.unsaved(), vec![]);
}

#[test]
fn a_burst_of_503_on_a_streamed_completion_is_ridden_out() {
    let fx = setup().transfer(small_parts()).mount();
    let data = bytes(11 * MIB, 2);
    fx.store
        .fail_next(Operation::CompleteMultipartUpload, 2, SLOW_DOWN);
    fx.put("f", &data).unwrap();
    assert!(fx.data("f") == data);
    assert_eq!(fx.count(Operation::CompleteMultipartUpload), 3);
    assert_eq!(fx.store.uploads(BUCKET), vec![]);
}

#[test]
fn a_persistent_500_at_close_is_eio_with_the_bytes_kept_and_a_note() {
    let fx = fx();
    fx.put("f", b"old").unwrap();
    // The flush's upload and the last release's.
    fx.store.fail_next(Operation::PutObject, 2, INTERNAL);
    assert_eq!(errno(fx.put("f", b"precious new bytes")), libc::EIO);
    assert_eq!(fx.data("f"), b"old", "the object is as it was");
    assert_eq!(
        fx.unsaved(),
        [(b"precious new bytes".to_vec(), Some("f".to_string()))]
    );
}

/// The cache dir's `staging/` and `unsaved/` removed while mounted (a cache cleaner, an
/// `rm -rf ~/.cache/*`) are made again when needed: every create and every write to an
/// existing file failed with EIO until a remount, and an upload that failed lost the bytes
/// (the copy under `unsaved/` could not be made, yet close said only EIO).
#[test]
fn the_staging_and_unsaved_dirs_are_made_again_if_removed_while_mounted() {
    let fx = fx();
    let cache_dir = fx.fs.options().cache_dir.clone();
    for d in ["staging", "unsaved"] {
        std::fs::remove_dir_all(cache_dir.join(d)).unwrap();
    }
    fx.put("f", b"written").unwrap();
    assert_eq!(fx.data("f"), b"written");

    assert!(
        !cache_dir.join("unsaved").exists(),
        "made before it is needed"
    );
    fx.store.fail_next(Operation::PutObject, 2, INTERNAL);
    assert_eq!(errno(fx.put("f", b"precious new bytes")), libc::EIO);
    assert_eq!(fx.data("f"), b"written");
    assert_eq!(
        fx.unsaved(),
        [(b"precious new bytes".to_vec(), Some("f".to_string()))]
    );
    for d in ["staging", "unsaved"] {
        let mode = std::fs::metadata(cache_dir.join(d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{d}");
    }
}

#[test]
fn a_close_that_failed_once_is_retried_by_the_last_release() {
    let fx = fx();
    fx.store.fail_next(Operation::PutObject, 1, INTERNAL);
    let fh = fx.open("f", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(fh, 0, b"bytes").unwrap();
    assert_eq!(errno(fx.fs.flush(fh)), libc::EIO);
    assert_eq!(fx.unsaved().len(), 1, "kept while it is not on the server");
    fx.fs.release(fh).unwrap();
    assert_eq!(fx.data("f"), b"bytes");
    assert_eq!(fx.unsaved(), vec![], "dropped once the upload succeeded");
}

#[test]
fn a_failed_streamed_part_falls_back_to_the_whole_file() {
    let fx = setup().transfer(small_parts()).mount();
    let data = bytes(11 * MIB, 3);
    fx.store.fail_next(Operation::UploadPart, 1, INTERNAL);
    fx.put("f", &data).unwrap();
    assert!(fx.data("f") == data);
    assert_eq!(
        fx.store.uploads(BUCKET),
        vec![],
        "the failed upload was aborted"
    );
}

#[test]
fn a_failed_upload_of_a_large_file_leaves_no_upload_open() {
    let fx = setup().transfer(small_parts()).mount();
    fx.store.fail_next(Operation::UploadPart, 100, INTERNAL);
    let data = bytes(11 * MIB, 4);
    assert_eq!(errno(fx.put("f", &data)), libc::EIO);
    assert_eq!(fx.store.uploads(BUCKET), vec![]);
    assert!(fx.object("f").is_none());
    let kept = fx.unsaved();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].0 == data);
}

#[test]
fn a_failed_lookup_is_an_error_not_an_absence() {
    let fx = fx();
    fx.put_behind("f", b"x");
    fx.store.fail_next(Operation::HeadObject, 1, INTERNAL);
    assert_eq!(errno(fx.stat("f")), libc::EIO);
    assert_eq!(fx.stat("f").unwrap().size, 1);
    fx.store.fail_next(
        Operation::HeadObject,
        1,
        Failure::Status(403, "AccessDenied"),
    );
    assert_eq!(errno(fx.stat("f")), libc::EACCES);
    fx.store
        .fail_next(Operation::ListObjectsV2, 1, Failure::Network);
    assert_eq!(errno(fx.ls("")), libc::EIO);
    assert_eq!(fx.ls("").unwrap(), ["f"]);
}

#[test]
fn failed_reads_and_deletes_leave_everything_as_it_was() {
    let fx = setup().opts(|o| o.data_cache_size = 0).mount();
    fx.put_behind("f", b"content");
    let fh = fx.open("f", libc::O_RDONLY).unwrap();
    fx.store.fail_next(Operation::GetObject, 1, INTERNAL);
    assert_eq!(errno(fx.read(fh, 0, 100)), libc::EIO);
    assert_eq!(fx.read(fh, 0, 100).unwrap(), b"content");
    fx.close(fh).unwrap();

    // A delete or a copy that fails may still have been applied: it is looked into and sent
    // again, so only failing every attempt fails the call.
    let attempts = quick_retries().max_attempts;
    fx.store
        .fail_next(Operation::DeleteObject, attempts, INTERNAL);
    assert_eq!(errno(fx.unlink("f")), libc::EIO);
    assert_eq!(fx.cat("f").unwrap(), b"content");
    fx.store
        .fail_next(Operation::CopyObject, attempts, INTERNAL);
    assert_eq!(errno(fx.rename("f", "g")), libc::EIO);
    assert_eq!(fx.keys(), ["f"]);
    fx.store
        .fail_next(Operation::CopyObject, attempts, INTERNAL);
    assert_eq!(
        errno(fx.setxattr("f", "user.x-amz-meta-k", "v", 0)),
        libc::EIO
    );
    assert_eq!(fx.object("f").unwrap().metadata.get("k"), None);
}

#[test]
fn a_server_without_conditional_writes_still_creates_with_o_excl() {
    // 501 to If-None-Match: learnt and replaced (issue 11's fallbacks).
    let fx = fx();
    fx.store.reject(crate::s3::memory::Capability::IfNoneMatch);
    fx.create_excl("f", b"x").unwrap();
    assert_eq!(fx.data("f"), b"x");
}

#[test]
fn a_server_that_answers_a_listing_token_with_itself_is_an_error_not_a_loop() {
    // A server that ignores continuation tokens sends the first page, and the token just
    // sent, again and again: `ls` and a directory's `mv` would never end (and `mv` would
    // gather keys until memory ran out). EIO after the first repeat instead.
    let fx = fx();
    for i in 0..1001 {
        fx.put_behind(&format!("d/{i:04}"), b"");
    }
    fx.store.stuck_listings();
    fx.store.reset_counts();
    assert_eq!(errno(fx.ls("d")), libc::EIO);
    // The lookup of `d`, the first page, and its repeat.
    assert_eq!(fx.count(Operation::ListObjectsV2), 3);
    assert_eq!(errno(fx.rename("d", "e")), libc::EIO);
    assert_eq!(fx.count(Operation::CopyObject), 0, "nothing copied");
}

/// A file whose upload failed (its bytes kept under `unsaved/` for `--recover`) and that is
/// then removed, while still open, leaves no copy there: `--recover` uploaded it again, so a
/// scratch file came back after its `rm` — or replaced what was written under its name since.
#[test]
fn a_file_removed_after_a_failed_upload_leaves_nothing_to_recover() {
    let attempts = quick_retries().max_attempts;
    for replace in [false, true] {
        let fx = fx();
        fx.put("new", b"newer").unwrap();
        let fh = fx.open("scratch", libc::O_CREAT | libc::O_RDWR).unwrap();
        fx.write(fh, 0, b"temporary").unwrap();
        fx.store.fail_next(Operation::PutObject, attempts, INTERNAL);
        assert_eq!(errno(fx.fs.fsync(fh)), libc::EIO);
        assert_eq!(fx.unsaved().len(), 1, "kept after the failed upload");
        if replace {
            fx.rename("new", "scratch").unwrap();
        } else {
            fx.unlink("scratch").unwrap();
        }
        assert_eq!(
            fx.read(fh, 0, 100).unwrap(),
            b"temporary",
            "the descriptor reads on"
        );
        fx.close(fh).unwrap();
        assert_eq!(fx.unsaved(), vec![], "replaced: {replace}");
    }
}

/// `--recover` puts a kept copy back only over the version its file was made from: a copy
/// whose object another client replaced since, or whose new file's name another client took,
/// is not written over it (and stays under `unsaved/`); one whose object is unchanged, or
/// whose name is still free, is uploaded; one whose object already holds its bytes (an upload
/// whose reply was lost) is just removed. Before, every copy was uploaded unconditionally, so
/// a stale one silently replaced the newer object. Also on a server that ignores the
/// conditions, as Garage does: the HEAD before the upload sees the change.
#[test]
fn a_kept_copy_is_uploaded_only_over_the_version_it_was_made_from() {
    use crate::fs::unsaved::{find, upload_kept, Base, Found, Recovered};
    for ignored in [false, true] {
        let fx = fx();
        if ignored {
            fx.store.ignore(crate::s3::Capability::IfMatch);
            fx.store.ignore(crate::s3::Capability::IfNoneMatch);
        }
        fx.put("same", b"old same").unwrap();
        fx.put("replaced", b"old replaced").unwrap();
        for (name, flags) in [
            ("same", libc::O_RDWR),
            ("replaced", libc::O_RDWR | libc::O_TRUNC),
            ("new", libc::O_RDWR | libc::O_CREAT),
            ("taken", libc::O_RDWR | libc::O_CREAT),
            ("landed", libc::O_RDWR | libc::O_CREAT),
        ] {
            let fh = fx.open(name, flags).unwrap();
            fx.write(fh, 0, format!("mine {name}").as_bytes()).unwrap();
            // The flush and the last release each try the upload once (the HTTP client's
            // retries are below the store).
            fx.store.fail_next(Operation::PutObject, 2, INTERNAL);
            assert_eq!(errno(fx.close(fh)), libc::EIO, "{name}");
        }
        assert_eq!(fx.unsaved().len(), 5);
        let replaced = fx.put_behind("replaced", b"theirs");
        let taken = fx.put_behind("taken", b"theirs");
        fx.put_behind("landed", b"mine landed");

        let bucket = Bucket::new(Arc::new(fx.store.clone()), BUCKET);
        let dir = fx.fs.options().cache_dir.join("unsaved");
        let mut outcome = Vec::new();
        for f in find(&dir).unwrap() {
            let Found::Kept {
                data,
                note: Some(note),
            } = f
            else {
                panic!("{f:?}");
            };
            let r = upload_kept(&bucket, &data, &note).unwrap();
            outcome.push((note.obj.key.clone(), r));
        }
        outcome.sort_by(|a, b| a.0.cmp(&b.0));
        let changed = |etag: &str| Recovered::Changed {
            now: Base::Version(etag.trim_matches('"').to_string()),
        };
        let want = [
            ("landed".to_string(), Recovered::AlreadyThere),
            ("new".to_string(), Recovered::Uploaded),
            ("replaced".to_string(), changed(&replaced)),
            ("same".to_string(), Recovered::Uploaded),
            ("taken".to_string(), changed(&taken)),
        ];
        assert_eq!(outcome, want, "ignored: {ignored}");
        assert_eq!(fx.data("same"), b"mine same");
        assert_eq!(fx.data("new"), b"mine new");
        assert_eq!(fx.data("replaced"), b"theirs", "ignored: {ignored}");
        assert_eq!(fx.data("taken"), b"theirs", "ignored: {ignored}");
        assert_eq!(
            fx.unsaved(),
            [
                (b"mine replaced".to_vec(), Some("replaced".to_string())),
                (b"mine taken".to_vec(), Some("taken".to_string())),
            ],
            "the copies not uploaded stay"
        );
    }
}

/// A change between `--recover`'s HEAD and its upload is caught by the upload's condition
/// (`If-Match`, `If-None-Match: *`), where the server honours it: the object another client
/// wrote (or removed) in that window stays as that client left it, and so does the copy.
#[test]
fn a_change_just_before_the_recovery_upload_is_refused_by_its_condition() {
    use crate::fs::unsaved::{Base, Recovered};
    /// Another client's change of the store.
    type Meddle = fn(&MemoryStore);
    let cases: [(&str, i32, Meddle, Base); 3] = [
        (
            "replaced",
            libc::O_RDWR,
            |s| {
                s.put_behind(BUCKET, "replaced", b"theirs".to_vec());
            },
            Base::Unknown,
        ),
        (
            "removed",
            libc::O_RDWR,
            |s| {
                s.delete_behind(BUCKET, "removed");
            },
            Base::Absent,
        ),
        (
            "taken",
            libc::O_RDWR | libc::O_CREAT,
            |s| {
                s.put_behind(BUCKET, "taken", b"theirs".to_vec());
            },
            Base::Unknown,
        ),
    ];
    for (name, flags, meddle, now) in cases {
        let fx = fx();
        if flags & libc::O_CREAT == 0 {
            fx.put(name, b"old").unwrap();
        }
        let fh = fx.open(name, flags).unwrap();
        fx.write(fh, 0, b"mine").unwrap();
        fx.store.fail_next(Operation::PutObject, 2, INTERNAL);
        assert_eq!(errno(fx.close(fh)), libc::EIO, "{name}");
        fx.store.before_next(Operation::PutObject, meddle);
        assert_eq!(
            recover_the_one_copy(&fx),
            Recovered::Changed { now },
            "{name}"
        );
        let left = fx.object(name).map(|o| o.data);
        assert_ne!(left.as_deref(), Some(&b"mine"[..]), "{name}");
        assert_eq!(fx.unsaved().len(), 1, "{name}: the copy stays");
    }
}

/// A file open for writing that the mount stops with (or whose upload fails) keeps, in the
/// note of its copy under `unsaved/`, the object's metadata — also when the file was uploaded
/// once already, after which its next upload reads the metadata again (so that another
/// client's change is kept) and holds none of its own — and an existing object written here
/// without a metadata change of its own.
#[test]
fn the_note_of_a_file_kept_at_stop_carries_the_objects_metadata() {
    let fx = fx();
    let theirs = meta(&[("mode", "33152"), ("tag", "blue")]);
    for key in ["once", "never"] {
        fx.store
            .put_behind_with(BUCKET, key, b"a".to_vec(), &theirs, &[]);
    }
    let once = fx.open("once", libc::O_WRONLY).unwrap();
    fx.write(once, 1, b"b").unwrap();
    fx.fs.fsync(once).unwrap();
    fx.write(once, 2, b"c").unwrap();
    let never = fx.open("never", libc::O_WRONLY).unwrap();
    fx.write(never, 1, b"b").unwrap();
    assert_eq!(fx.fs.save_open_files(), 2);
    let dir = fx.fs.options().cache_dir.join("unsaved");
    let notes: Vec<_> = crate::fs::unsaved::find(&dir)
        .unwrap()
        .into_iter()
        .filter_map(|f| match f {
            crate::fs::unsaved::Found::Kept { note, .. } => note,
            crate::fs::unsaved::Found::Leftover(_) => None,
        })
        .collect();
    assert_eq!(notes.len(), 2);
    for n in notes {
        assert_eq!(n.metadata.get("tag"), Some("blue"), "{}", n.obj.key);
        assert_eq!(n.metadata.get("mode"), Some("33152"), "{}", n.obj.key);
    }
}

/// A file whose upload failed at the fsync of one descriptor, and that its program keeps
/// writing through another, is still open: its copy under `unsaved/` is a hard link to the
/// live staging file. `--recover` run then uploaded it half-written ("first half, sec"), which
/// was the object until the mount's own upload at close. It leaves such a copy alone (for a
/// later `--recover`) until the mount closes the file.
#[test]
fn recover_leaves_alone_a_copy_whose_file_a_running_mount_still_has_open() {
    use crate::fs::unsaved::Recovered;
    let fx = fx();
    fx.put("f", b"old").unwrap();
    let one = fx.open("f", libc::O_WRONLY).unwrap();
    let two = fx.open("f", libc::O_WRONLY).unwrap();
    fx.write(one, 0, b"first half").unwrap();
    fx.store.fail_next(Operation::PutObject, 1, INTERNAL);
    assert_eq!(errno(fx.fs.fsync(one)), libc::EIO);
    fx.write(two, 10, b", sec").unwrap();
    assert_eq!(
        recover_the_one_copy(&fx),
        Recovered::StillOpen,
        "the file is still open"
    );
    assert_eq!(
        fx.data("f"),
        b"old",
        "nothing half-written reached the server"
    );
    assert_eq!(fx.unsaved().len(), 1, "the copy stays");
    fx.write(two, 15, b"ond half").unwrap();
    fx.close(one).unwrap();
    fx.close(two).unwrap();
    assert_eq!(fx.data("f"), b"first half, second half");
    assert_eq!(
        fx.unsaved(),
        vec![],
        "uploaded at close: nothing left to recover"
    );
}

/// What `--recover` does with the one copy under `unsaved/`.
fn recover_the_one_copy(fx: &Fx) -> crate::fs::unsaved::Recovered {
    use crate::fs::unsaved::{find, upload_kept, Found};
    let bucket = Bucket::new(Arc::new(fx.store.clone()), BUCKET);
    let found = find(&fx.fs.options().cache_dir.join("unsaved")).unwrap();
    let [Found::Kept {
        data,
        note: Some(note),
    }] = &found[..]
    else {
        panic!("{found:?}");
    };
    upload_kept(&bucket, data, note).unwrap()
}
