//! `DeleteObject` and `DeleteObjects` whose reply was lost (see the module note of
//! [`super`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use super::{run, Verdict};
use crate::s3::client::RetryPolicy;
use crate::s3::error::Result;
use crate::s3::name::ObjectRef;
use crate::s3::store::{head_if_any, ObjectStore};
use crate::s3::types::{DeleteResult, KeyVersion, ListRequest};

/// DELETE `obj`, the version whose ETag is `etag` when given; a lost reply is looked into (see
/// the module note).
pub(crate) fn delete(
    store: &dyn ObjectStore,
    policy: &RetryPolicy,
    obj: &ObjectRef,
    etag: Option<&str>,
) -> Result<()> {
    let what = format!("DELETE {obj}");
    run(
        policy,
        obj,
        &what,
        || store.delete_object(obj),
        || {
            let head = head_if_any(&*store.single_attempt(), obj)?;
            let now = head.as_ref().map(|h| h.etag.as_deref());
            let verdict = judge_delete(now, etag);
            if let (Verdict::Ours(()), Some(Some(theirs))) = (&verdict, now) {
                log::info!(
                    "{what}: {obj} now holds {theirs}, written by another client since; kept"
                );
            }
            Ok(verdict)
        },
    )
}

/// After a delete whose reply was lost, given the key's ETag now (`None`: no object; `Some(None)`:
/// an object without an ETag) and the version meant: done, or to be sent again?
pub(crate) fn judge_delete(now: Option<Option<&str>>, meant: Option<&str>) -> Verdict<()> {
    match (now, meant) {
        (None, _) => Verdict::Ours(()),
        // Another version than the one meant: written since, by someone else. Not ours to
        // delete; the one meant is gone.
        (Some(Some(now)), Some(meant)) if now != meant => Verdict::Ours(()),
        _ => Verdict::NotApplied,
    }
}

/// One DeleteObjects of `keys` (at most 1000) in `bucket`; a lost reply is looked into with a
/// listing, and only the keys still holding the version meant are sent again.
pub(crate) fn delete_objects(
    store: &dyn ObjectStore,
    policy: &RetryPolicy,
    bucket: &str,
    keys: &[KeyVersion],
) -> Result<DeleteResult> {
    let left = RefCell::new(keys.to_vec());
    let target = ObjectRef {
        bucket: bucket.to_string(),
        key: String::new(),
    };
    let what = format!("DeleteObjects s3://{bucket}/ ({} keys)", keys.len());
    let send = || {
        let names: Vec<String> = left.borrow().iter().map(|k| k.key.clone()).collect();
        store.delete_objects(bucket, &names)
    };
    let look = || {
        let now = versions_now(&*store.single_attempt(), bucket, &left.borrow())?;
        let still: Vec<KeyVersion> = left
            .borrow()
            .iter()
            .filter(|k| {
                let here = now.get(&k.key).map(|e| e.as_deref());
                judge_delete(here, k.etag.as_deref()) == Verdict::NotApplied
            })
            .cloned()
            .collect();
        if still.is_empty() {
            return Ok(Verdict::Ours(DeleteResult::default()));
        }
        log::debug!("{what}: {} keys still there", still.len());
        *left.borrow_mut() = still;
        Ok(Verdict::NotApplied)
    };
    run(policy, &target, &what, send, look)
}

/// The ETags of those of `keys` that exist now (one listing of their common prefix, from just
/// before the first key to the last).
fn versions_now(
    looks: &dyn ObjectStore,
    bucket: &str,
    keys: &[KeyVersion],
) -> Result<HashMap<String, Option<String>>> {
    let wanted: HashSet<&str> = keys.iter().map(|k| k.key.as_str()).collect();
    let mut found = HashMap::new();
    let (Some(first), Some(last)) = (wanted.iter().min(), wanted.iter().max()) else {
        return Ok(found);
    };
    let prefix = wanted
        .iter()
        .fold(first.to_string(), |p, k| common_prefix(&p, k));
    let mut req = ListRequest {
        prefix,
        // Anything shorter than the first key sorts before it.
        start_after: first
            .char_indices()
            .last()
            .map(|(i, _)| first[..i].to_string()),
        ..ListRequest::default()
    };
    loop {
        let page = looks.list_objects_v2(bucket, &req)?;
        for o in &page.objects {
            if wanted.contains(o.key.as_str()) {
                found.insert(o.key.clone(), o.etag.clone());
            }
        }
        let past_last = page.objects.last().is_some_and(|o| o.key.as_str() >= *last);
        match page.next_continuation_token {
            Some(t) if page.is_truncated && !past_last => req.continuation_token = Some(t),
            _ => return Ok(found),
        }
    }
}

/// The longest common prefix of `a` and `b`, on a character boundary.
fn common_prefix(a: &str, b: &str) -> String {
    a.chars()
        .zip(b.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}
