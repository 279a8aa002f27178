//! Keeping an object's tags through a write that replaces it.
//!
//! S3 gives the object a PUT or a multipart upload makes the tags the request carries
//! (`x-amz-tagging`) and none otherwise, while a copy keeps its source's. So every write that
//! replaces an object with new bytes — a rewrite at `close`, a streamed upload, the re-upload
//! that stands in for a metadata `REPLACE`, a multipart copy above 5 GiB — would drop its tags
//! unless it sends them again. The headers such a write carries come from the object's HEAD,
//! which names only how many tags it has (`x-amz-tagging-count`, kept with them:
//! [`super::meta::TAG_COUNT_HEADER`]); [`keeping_tags`] turns that count into the tags
//! themselves with one GetObjectTagging, only for an object that has tags, and sends them.
//!
//! Tags are not worth a user's bytes: when they cannot be read (a server without tagging, a
//! policy without `s3:GetObjectTagging`), or the server refuses the write because it carries
//! them (a policy without `s3:PutObjectTagging`, which S3 asks for a PUT with tags), the
//! write goes ahead without them and the log says so.

use std::borrow::Cow;

use super::error::{Result, StorageError};
use super::meta::{tag_count, TAGGING_HEADER, TAG_COUNT_HEADER};
use super::name::ObjectRef;
use super::store::ObjectStore;
use super::types::PutOptions;

/// Run `write` (a PUT or a CreateMultipartUpload of `obj`, replacing it) with `opts`, the
/// object's tags put in place of their count when `opts` names one; written again without
/// them if the server refuses tags. (A write whose tags come from another object — a copy's
/// source — puts them in first with [`with_tags`].)
pub(crate) fn keeping_tags<T>(
    store: &dyn ObjectStore,
    obj: &ObjectRef,
    opts: &PutOptions,
    mut write: impl FnMut(&PutOptions) -> Result<T>,
) -> Result<T> {
    let opts = with_tags(store, obj, opts);
    match write(&opts) {
        Err(e @ StorageError::AccessDenied { .. }) if carries_tags(&opts) => {
            log::warn!("{obj}: the server refused the write with the object's tags ({e}); writing it without them (does the policy allow s3:PutObjectTagging?)");
            write(&without_tags(&opts))
        }
        other => other,
    }
}

/// `opts` with the tags of `from` in place of the count its headers carry (none left out
/// when it has none); unchanged when they carry no count.
pub(crate) fn with_tags<'a>(
    store: &dyn ObjectStore,
    from: &ObjectRef,
    opts: &'a PutOptions,
) -> Cow<'a, PutOptions> {
    if !opts
        .content_headers
        .iter()
        .any(|(n, _)| n == TAG_COUNT_HEADER)
    {
        return Cow::Borrowed(opts);
    }
    let tags = if tag_count(&opts.content_headers) == 0 {
        None
    } else {
        match store.get_object_tagging(from) {
            Ok(tags) => Some(tags),
            // Gone: there is nothing left to keep (the write decides what that means).
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                log::warn!("{from}: its tags cannot be read ({e}); the new version will have none");
                None
            }
        }
    };
    let mut opts = without_tags(opts);
    if let Some(tags) = tags.filter(|t| !t.is_empty()) {
        opts.content_headers
            .push((TAGGING_HEADER.into(), tags.to_header()));
    }
    Cow::Owned(opts)
}

/// The headers of a copy into `obj` that is to have `obj`'s own tags (those the headers' count
/// says it has: none for a new object) rather than its source's, which a copy takes along.
pub(crate) fn own_tags(
    store: &dyn ObjectStore,
    obj: &ObjectRef,
    content_headers: &[(String, String)],
) -> Vec<(String, String)> {
    let opts = PutOptions {
        content_headers: content_headers.to_vec(),
        ..PutOptions::default()
    };
    let mut headers = with_tags(store, obj, &opts).into_owned().content_headers;
    if !headers.iter().any(|(n, _)| n == TAGGING_HEADER) {
        // Named even when empty: the copy's tag set is this one (none), not the source's.
        headers.push((TAGGING_HEADER.into(), String::new()));
    }
    headers
}

fn carries_tags(opts: &PutOptions) -> bool {
    opts.content_headers
        .iter()
        .any(|(n, v)| n == TAGGING_HEADER && !v.is_empty())
}

fn without_tags(opts: &PutOptions) -> PutOptions {
    let mut opts = opts.clone();
    opts.content_headers
        .retain(|(n, _)| n != TAG_COUNT_HEADER && n != TAGGING_HEADER);
    opts
}
