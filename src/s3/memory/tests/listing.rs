//! Listings: prefixes, delimiters, pages, start-after.

use super::*;

fn list(s: &MemoryStore, req: &ListRequest) -> ListPage {
    s.list_objects_v2(B, req).unwrap()
}

/// Every page of a listing, concatenated, with the number of pages.
fn list_all(s: &MemoryStore, mut req: ListRequest) -> (Vec<String>, Vec<String>, usize) {
    let (mut keys, mut prefixes, mut pages) = (Vec::new(), Vec::new(), 0);
    loop {
        let page = list(s, &req);
        pages += 1;
        keys.extend(page.objects.into_iter().map(|o| o.key));
        prefixes.extend(page.common_prefixes);
        match page.next_continuation_token {
            Some(t) if page.is_truncated => req.continuation_token = Some(t),
            _ => return (keys, prefixes, pages),
        }
    }
}

#[test]
fn listing_with_prefix_delimiter_pages_and_start_after() {
    let s = store();
    for k in ["a", "d/1", "d/2", "d/sub/3", "e/1", "f", "é"] {
        put(&s, k, b"x");
    }
    let page = list(
        &s,
        &ListRequest {
            delimiter: Some("/".into()),
            ..ListRequest::default()
        },
    );
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["a", "f", "é"]);
    assert_eq!(page.common_prefixes, ["d/", "e/"]);
    assert!(!page.is_truncated);
    assert_eq!(page.objects[0].size, 1);
    assert!(page.objects[0].etag.is_some() && page.objects[0].last_modified.is_some());
    let sub = list(
        &s,
        &ListRequest {
            prefix: "d/".into(),
            delimiter: Some("/".into()),
            ..ListRequest::default()
        },
    );
    let keys: Vec<&str> = sub.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        (keys, sub.common_prefixes),
        (vec!["d/1", "d/2"], vec!["d/sub/".to_string()])
    );
    // Pages of two: a common prefix counts as one entry and never comes twice.
    let (keys, prefixes, pages) = list_all(
        &s,
        ListRequest {
            delimiter: Some("/".into()),
            max_keys: Some(2),
            ..ListRequest::default()
        },
    );
    assert_eq!(keys, ["a", "f", "é"]);
    assert_eq!(prefixes, ["d/", "e/"]);
    assert_eq!(pages, 3);
    let after = list(
        &s,
        &ListRequest {
            start_after: Some("d/2".into()),
            ..ListRequest::default()
        },
    );
    let keys: Vec<&str> = after.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["d/sub/3", "e/1", "f", "é"]);
    let bad = s.list_objects_v2(
        B,
        &ListRequest {
            continuation_token: Some("not a token".into()),
            ..ListRequest::default()
        },
    );
    assert_eq!(
        status_of(&bad.unwrap_err()),
        Some((400, Some("InvalidArgument")))
    );
}

#[test]
fn listing_pages_add_up_to_the_whole_listing() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let keys = proptest::collection::btree_set("[ab/]{1,5}", 0..30);
    let case = (keys, "[ab/]{0,2}", proptest::option::of(Just("/")), 1u32..5);
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case, |(keys, prefix, delimiter, max)| {
            let s = store();
            for k in &keys {
                put(&s, k, b"");
            }
            let req = ListRequest {
                prefix: prefix.clone(),
                delimiter: delimiter.map(str::to_string),
                ..ListRequest::default()
            };
            // The model: every key under the prefix, rolled up at the first delimiter.
            let mut want_keys = Vec::new();
            let mut want_prefixes: Vec<String> = Vec::new();
            for k in keys.iter().filter(|k| k.starts_with(&prefix)) {
                match delimiter.and_then(|d| k[prefix.len()..].find(d)) {
                    Some(i) => {
                        let p = k[..prefix.len() + i + 1].to_string();
                        if want_prefixes.last() != Some(&p) {
                            want_prefixes.push(p);
                        }
                    }
                    None => want_keys.push(k.clone()),
                }
            }
            let (all_keys, all_prefixes, _) = list_all(&s, req.clone());
            prop_assert_eq!(&all_keys, &want_keys);
            prop_assert_eq!(&all_prefixes, &want_prefixes);
            let (paged_keys, paged_prefixes, pages) = list_all(
                &s,
                ListRequest {
                    max_keys: Some(max),
                    ..req
                },
            );
            prop_assert_eq!(paged_keys, want_keys.clone());
            prop_assert_eq!(paged_prefixes, want_prefixes.clone());
            let entries = want_keys.len() + want_prefixes.len();
            prop_assert_eq!(pages, entries.div_ceil(max as usize).max(1));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
