//! An object's tags through the mount's changes (docs/semantics.md, "Tags"): a write that
//! replaces the object (PUT, multipart upload) sends them again, read with one
//! GetObjectTagging only for an object whose HEAD counted some; a copy keeps the source's by
//! itself; `cp` gives the target its own, not the source's.

use super::copy::{cp, cp_with_ranges};
use super::*;
use crate::s3::memory::Failure;
use crate::s3::meta::TagSet;

/// Tags as `x-amz-tagging` names them, among content headers.
fn tagged(tags: &[(&str, &str)]) -> Vec<(String, String)> {
    let set = TagSet(
        tags.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    vec![
        ("content-type".into(), "text/plain".into()),
        ("x-amz-tagging".into(), set.to_header()),
    ]
}

/// Another client's object `key` with these tags.
fn put_tagged(fx: &Fx, key: &str, data: &[u8], tags: &[(&str, &str)]) {
    let headers = tagged(tags);
    fx.store
        .put_behind_with(BUCKET, key, data.to_vec(), &Metadata::new(), &headers);
}

/// The tags stored with `key`.
fn tags_of(fx: &Fx, key: &str) -> Vec<(String, String)> {
    fx.object(key).unwrap().tags.0
}

fn pairs(tags: &[(&str, &str)]) -> Vec<(String, String)> {
    tags.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Tags with the characters the header's encoding must carry.
const TAGS: &[(&str, &str)] = &[
    ("project", "blue green"),
    ("owner", "a=b+c/d:e@f"),
    ("empty", ""),
];

#[test]
fn a_rewrite_keeps_the_objects_tags_and_an_untagged_one_costs_nothing() {
    let fx = fx();
    put_tagged(&fx, "t.txt", b"old", TAGS);
    fx.store.put_behind(BUCKET, "plain.txt", b"old");
    fx.put("plain.txt", b"rewritten").unwrap();
    assert_eq!(
        fx.count(Operation::GetObjectTagging),
        0,
        "no tags, no request"
    );
    assert_eq!(tags_of(&fx, "plain.txt"), []);
    fx.put("t.txt", b"rewritten").unwrap();
    assert_eq!(fx.data("t.txt"), b"rewritten");
    assert_eq!(tags_of(&fx, "t.txt"), pairs(TAGS));
    assert_eq!(fx.count(Operation::GetObjectTagging), 1);
    // Appended to, after a remount (the count comes from a fresh HEAD).
    let fx = fx.remount();
    let fh = fx.open("t.txt", libc::O_WRONLY | libc::O_APPEND).unwrap();
    fx.write(fh, 9, b"+").unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.data("t.txt"), b"rewritten+");
    assert_eq!(tags_of(&fx, "t.txt"), pairs(TAGS));
}

#[test]
fn a_streamed_multipart_rewrite_keeps_the_tags() {
    let fx = setup().transfer(small_parts()).mount();
    put_tagged(&fx, "big", b"old", TAGS);
    let data = bytes(13 * MIB, 3);
    fx.put("big", &data).unwrap();
    assert!(fx.count(Operation::UploadPart) >= 2, "a multipart upload");
    assert_eq!(fx.data("big"), data);
    assert_eq!(tags_of(&fx, "big"), pairs(TAGS));
}

#[test]
fn chmod_and_mv_keep_the_tags_without_reading_them() {
    let fx = fx();
    put_tagged(&fx, "t.txt", b"data", TAGS);
    fx.setattr(
        "t.txt",
        AttrChange {
            mode: Some(0o600),
            ..AttrChange::default()
        },
    )
    .unwrap();
    assert_eq!(tags_of(&fx, "t.txt"), pairs(TAGS), "after chmod");
    fx.mkdir("d").unwrap();
    fx.rename("t.txt", "d/t.txt").unwrap();
    assert_eq!(tags_of(&fx, "d/t.txt"), pairs(TAGS), "after mv");
    fx.rename("d", "e").unwrap();
    assert_eq!(
        tags_of(&fx, "e/t.txt"),
        pairs(TAGS),
        "after mv of its directory"
    );
    // A copy takes its source's tags by itself.
    assert_eq!(fx.count(Operation::GetObjectTagging), 0);
}

#[test]
fn cp_gives_the_target_its_own_tags_not_the_sources() {
    let fx = fx();
    put_tagged(&fx, "src", b"source", TAGS);
    assert!(cp(&fx, "src", "new").unwrap(), "copied on the server");
    assert_eq!(fx.data("new"), b"source");
    assert_eq!(tags_of(&fx, "new"), [], "a new file has no tags");
    // An existing target, truncated (cp without O_EXCL), keeps its own.
    let own = [("mine", "yes")];
    put_tagged(&fx, "old", b"old bytes", &own);
    assert!(cp_with_ranges(&fx, "src", "old", libc::O_TRUNC, MIB as u64).unwrap());
    assert_eq!(fx.data("old"), b"source");
    assert_eq!(tags_of(&fx, "old"), pairs(&own));
    assert_eq!(tags_of(&fx, "src"), pairs(TAGS), "the source is untouched");
    assert_eq!(fx.count(Operation::PutObject), 0, "only copies");
    // Untagged source and target: a plain copy, no tags read.
    fx.store.put_behind(BUCKET, "plain", b"plain");
    let reads = fx.count(Operation::GetObjectTagging);
    assert!(cp(&fx, "plain", "plain2").unwrap());
    assert_eq!(fx.count(Operation::GetObjectTagging), reads);
    assert_eq!(tags_of(&fx, "plain2"), []);
}

#[test]
fn tags_that_cannot_be_read_or_sent_never_cost_the_bytes() {
    let fx = fx();
    put_tagged(&fx, "t.txt", b"old", TAGS);
    // A policy without s3:GetObjectTagging: written without them.
    fx.store.fail_next(
        Operation::GetObjectTagging,
        1,
        Failure::Status(403, "AccessDenied"),
    );
    fx.put("t.txt", b"one").unwrap();
    assert_eq!(fx.data("t.txt"), b"one");
    assert_eq!(tags_of(&fx, "t.txt"), []);
    // A policy without s3:PutObjectTagging refuses a PUT with tags: sent again without them.
    put_tagged(&fx, "u.txt", b"old", TAGS);
    let puts = fx.count(Operation::PutObject);
    fx.store.fail_next(
        Operation::PutObject,
        1,
        Failure::Status(403, "AccessDenied"),
    );
    fx.put("u.txt", b"two").unwrap();
    assert_eq!(fx.data("u.txt"), b"two");
    assert_eq!(tags_of(&fx, "u.txt"), []);
    assert_eq!(fx.count(Operation::PutObject), puts + 2);
}
