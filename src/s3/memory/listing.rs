//! ListObjectsV2 in the in-memory S3: prefix, delimiter, max-keys, start-after and opaque
//! continuation tokens, as S3 pages a listing.

use base64::Engine;

use super::super::types::{ListPage, ListRequest, ListedObject};
use super::state::{Answer, Refusal, State, MAX_PAGE};

impl State {
    /// One ListObjectsV2 page (the token names the last entry listed).
    pub fn list(&self, bucket: &str, req: &ListRequest) -> Answer<ListPage> {
        let b = self.bucket(bucket)?;
        let max = req
            .max_keys
            .map_or(MAX_PAGE, |m| (m as usize).min(MAX_PAGE));
        // Where the page starts: after the token's entry, else after start-after.
        let after: Option<Entry> = match &req.continuation_token {
            Some(_) if self.stuck_listings => None,
            Some(t) => Some(decode_token(t)?),
            None => req.start_after.clone().map(Entry::Key),
        };
        let mut page = ListPage::default();
        let mut last: Option<Entry> = None;
        let mut emitted = 0usize;
        for (key, obj) in b.objects.range(req.prefix.clone()..) {
            if !key.starts_with(&req.prefix) {
                break;
            }
            let entry = entry_of(key, &req.prefix, req.delimiter.as_deref());
            if after.as_ref().is_some_and(|a| !a.is_before(key, &entry)) {
                continue;
            }
            if last.as_ref() == Some(&entry) {
                continue; // another key under a common prefix already listed
            }
            if emitted == max {
                page.is_truncated = max > 0;
                break;
            }
            match &entry {
                Entry::Key(k) => page.objects.push(ListedObject {
                    key: k.clone(),
                    size: obj.data.len() as u64,
                    etag: Some(obj.etag.clone()),
                    last_modified: Some(obj.last_modified),
                    storage_class: obj.info().storage_class().map(str::to_string),
                }),
                Entry::Prefix(p) => page.common_prefixes.push(p.clone()),
            }
            emitted += 1;
            last = Some(entry);
        }
        if page.is_truncated {
            page.next_continuation_token = last.as_ref().map(encode_token);
        }
        Ok(page)
    }
}

/// One entry of a listing page: a key, or a common prefix standing for the keys under it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Key(String),
    Prefix(String),
}

impl Entry {
    /// Is this entry (where a page continues from) before `key`, whose entry is `entry`?
    fn is_before(&self, key: &str, entry: &Entry) -> bool {
        match self {
            Entry::Key(k) => key > k.as_str(),
            // Every key under a listed common prefix was listed with it.
            Entry::Prefix(p) => key > p.as_str() && entry != self && !key.starts_with(p),
        }
    }
}

fn entry_of(key: &str, prefix: &str, delimiter: Option<&str>) -> Entry {
    let rest = &key[prefix.len()..];
    match delimiter
        .filter(|d| !d.is_empty())
        .and_then(|d| rest.find(d).map(|i| i + d.len()))
    {
        Some(end) => Entry::Prefix(key[..prefix.len() + end].to_string()),
        None => Entry::Key(key.to_string()),
    }
}

/// Continuation tokens are opaque to clients; here they name the last entry listed.
fn encode_token(entry: &Entry) -> String {
    let (kind, name) = match entry {
        Entry::Key(k) => ('k', k),
        Entry::Prefix(p) => ('p', p),
    };
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}{name}"))
}

fn decode_token(token: &str) -> Answer<Entry> {
    let bad = || {
        Refusal::new(
            400,
            "InvalidArgument",
            "The continuation token provided is incorrect",
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut chars = text.chars();
    match chars.next() {
        Some('k') => Ok(Entry::Key(chars.as_str().to_string())),
        Some('p') => Ok(Entry::Prefix(chars.as_str().to_string())),
        _ => Err(bad()),
    }
}
