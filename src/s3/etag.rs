//! What S3 makes an object's ETag of, when it is not encrypted with a customer or KMS key:
//! the MD5 of the bytes for a single PUT (or a part, or a CopyObject), and for a multipart
//! upload the MD5 of the parts' binary MD5s followed by `-` and the number of parts.
//!
//! [`super::reconcile`] uses it to recognise its own write after a lost reply, and
//! [`super::MemoryStore`] to give objects the ETags S3 gives them.

use md5::{Digest, Md5};

use super::xml;

/// Hex digits of an MD5 digest.
const MD5_HEX_LEN: usize = 32;

/// The ETag of a single PUT of `bytes`: their MD5 as lower-case hex.
pub fn md5_etag(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// The ETag S3 gives a multipart upload of parts with these ETags: the MD5 of the parts' binary
/// MD5s, then `-` and the number of parts. `None` unless every part ETag is an MD5 (32 hex
/// digits, quotes allowed), or when there are no parts.
pub fn multipart_etag<'a>(part_etags: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut md5 = Md5::new();
    let mut count = 0usize;
    for etag in part_etags {
        let etag = xml::normalize_etag(etag);
        if !is_md5_hex(&etag) {
            return None;
        }
        md5.update(hex::decode(&etag).ok()?);
        count += 1;
    }
    (count > 0).then(|| format!("{}-{count}", hex::encode(md5.finalize())))
}

pub(crate) fn is_md5_hex(s: &str) -> bool {
    s.len() == MD5_HEX_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_of_known_parts() {
        // moto 5.2.1 answered a one-part upload of "hello" (part ETag = MD5("hello")) with
        // ETag "62109206880d38a4010a98e11243924a-1" (measured; see the README).
        assert_eq!(
            multipart_etag(["\"5d41402abc4b2a76b9719d911017c592\""]).as_deref(),
            Some("62109206880d38a4010a98e11243924a-1")
        );
        // Three parts, expected value computed here from the parts' bytes independently.
        let bodies: [&[u8]; 3] = [b"part one", b"part two", b"3"];
        let part_md5s: Vec<[u8; 16]> = bodies.iter().map(|b| Md5::digest(b).into()).collect();
        let mut joined = Vec::new();
        for d in &part_md5s {
            joined.extend_from_slice(d);
        }
        let want = format!("{:x}-3", Md5::digest(&joined));
        let etags: Vec<String> = part_md5s.iter().map(hex::encode).collect();
        assert_eq!(
            multipart_etag(etags.iter().map(String::as_str)).as_deref(),
            Some(want.as_str())
        );
        // Upper-case hex and escaped quotes are the same ETags.
        let shouty: Vec<String> = etags
            .iter()
            .map(|e| format!("&quot;{}&quot;", e.to_uppercase()))
            .collect();
        assert_eq!(
            multipart_etag(shouty.iter().map(String::as_str)).as_deref(),
            Some(want.as_str())
        );
        // Anything that is not an MD5 makes the ETag unknowable, not wrong.
        for bad in [
            "5d41402abc4b2a76b9719d911017c59",
            "5d41402abc4b2a76b9719d911017c592-1",
            "zz41402abc4b2a76b9719d911017c592",
            "",
        ] {
            assert_eq!(multipart_etag([etags[0].as_str(), bad]), None, "{bad:?}");
        }
        assert_eq!(multipart_etag([]), None);
    }

    #[test]
    fn single_put_etag_is_the_md5() {
        assert_eq!(md5_etag(b"hello"), "5d41402abc4b2a76b9719d911017c592");
        assert!(is_md5_hex(&md5_etag(b"")));
    }
}
