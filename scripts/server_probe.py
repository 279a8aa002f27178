"""Probe what an S3 server does with the requests s3mount relies on; run by scripts/probe-servers
with the moto virtualenv's python (boto3), S3_ENDPOINT / AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY in the environment (path style, region us-east-1).

Requests are signed with botocore's SigV4 but sent and read raw (http.client), so the table
shows what the server answered, not what boto3 made of it. Prints one line per probe:
`name<TAB>verdict`, where the verdict starts with "honoured", "ignored", "rejected" or
"fallback" where that applies, then what was seen. Diagnostics go to stderr.
"""

import hashlib
import http.client
import os
import re
import sys
import urllib.parse
import uuid

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
# The smallest part S3 accepts that is not the last one.
PART_SIZE = 5 * 1024 * 1024
WRONG_ETAG = '"00000000000000000000000000000000"'

ENDPOINT = os.environ["S3_ENDPOINT"].rstrip("/")
CREDS = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
BUCKET = "probe-" + uuid.uuid4().hex[:12]


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def code(self):
        m = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return m.group(1).decode() if m else ""

    def brief(self):
        c = self.code()
        return f"{self.status}{' ' + c if c else ''}"


def request(method, key="", query="", headers=None, body=b"", creds=CREDS):
    """A SigV4-signed request to BUCKET/key; `query` already encoded (a=b&c=d)."""
    path = "/" + BUCKET + ("/" + urllib.parse.quote(key, safe="/~") if key is not None else "")
    url = ENDPOINT + path + ("?" + query if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(creds, "s3", REGION).add_auth(req)
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    target = parts.path + ("?" + parts.query if parts.query else "")
    conn.request(method, target, body=body, headers=dict(req.headers.items()))
    r = conn.getresponse()
    reply = Reply(r.status, r.getheaders(), r.read())
    conn.close()
    return reply


def put(key, body=b"x", headers=None):
    return request("PUT", key, headers=headers, body=body)


def get_body(key):
    r = request("GET", key)
    return r.body if r.status == 200 else None


def verdict_412(r, what_ignored):
    if r.status == 412:
        return f"honoured ({r.brief()})"
    if 200 <= r.status < 300:
        return f"ignored ({r.status}: {what_ignored})"
    return f"rejected ({r.brief()})"


def multipart(key, headers=None, complete_headers=None):
    """Create, two parts, complete; returns (complete reply, etag or None)."""
    r = request("POST", key, "uploads", headers=headers)
    m = re.search(rb"<UploadId>([^<]*)</UploadId>", r.body)
    if r.status != 200 or not m:
        return r, None
    upload = m.group(1).decode()
    q = urllib.parse.quote(upload, safe="")
    etags = []
    for n, data in ((1, b"a" * PART_SIZE), (2, b"b" * 1024)):
        p = request("PUT", key, f"partNumber={n}&uploadId={q}", body=data)
        if p.status != 200:
            return p, None
        etags.append(p.headers.get("etag"))
    xml = "<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
        for n, e in enumerate(etags, 1)
    ) + "</CompleteMultipartUpload>"
    c = request("POST", key, f"uploadId={q}", headers=complete_headers, body=xml.encode())
    m = re.search(rb"<ETag>([^<]*)</ETag>", c.body)
    etag = m.group(1).decode().replace("&quot;", '"') if m else None
    if c.status != 200:
        request("DELETE", key, f"uploadId={q}")
    return c, etag


def probe_conditional_create():
    fresh = put("cc-new", b"one", {"If-None-Match": "*"})
    if fresh.status != 200:
        return f"rejected (on a new key: {fresh.brief()})"
    r = put("cc-new", b"two", {"If-None-Match": "*"})
    return verdict_412(r, "object overwritten" if get_body("cc-new") == b"two" else "?")


def probe_conditional_complete():
    put("cm-key", b"existing")
    c, _ = multipart("cm-key", complete_headers={"If-None-Match": "*"})
    kept = get_body("cm-key") == b"existing"
    return verdict_412(c, "object overwritten" if not kept else "?")


def probe_conditional_replace():
    put("cr-key", b"one")
    r = put("cr-key", b"two", {"If-Match": WRONG_ETAG})
    return verdict_412(r, "object overwritten" if get_body("cr-key") == b"two" else "?")


def probe_parts_of_completed_upload():
    # After a lost completion reply, s3mount asks ListParts whether the upload is still open.
    r = request("POST", "lp-key", "uploads")
    m = re.search(rb"<UploadId>([^<]*)</UploadId>", r.body)
    if r.status != 200 or not m:
        return f"probe failed ({r.brief()})"
    q = urllib.parse.quote(m.group(1).decode(), safe="")
    p = request("PUT", "lp-key", f"partNumber=1&uploadId={q}", body=b"x")
    xml = f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{p.headers.get('etag')}</ETag></Part></CompleteMultipartUpload>"
    request("POST", "lp-key", f"uploadId={q}", body=xml.encode())
    lp = request("GET", "lp-key", f"max-parts=1&uploadId={q}")
    if lp.status == 404:
        return f"NoSuchUpload ({lp.brief()})"
    parts = lp.body.count(b"<Part>")
    return f"{lp.status} with {parts} parts (not NoSuchUpload)"


def probe_delete_missing():
    r = request("DELETE", "never-there")
    return f"{r.status}" if 200 <= r.status < 300 else f"error ({r.brief()})"


def probe_conditional_get():
    put("cg-key", b"content")
    r = request("GET", "cg-key", headers={"If-Match": WRONG_ETAG})
    return verdict_412(r, "body sent")


def probe_conditional_copy():
    put("cp-src", b"content")
    r = request(
        "PUT",
        "cp-dst",
        headers={
            "x-amz-copy-source": f"/{BUCKET}/cp-src",
            "x-amz-copy-source-if-match": WRONG_ETAG,
        },
    )
    return verdict_412(r, "copied")


def replace_self(key):
    r = request(
        "PUT",
        key,
        headers={
            "x-amz-copy-source": f"/{BUCKET}/{urllib.parse.quote(key)}",
            "x-amz-metadata-directive": "REPLACE",
            "x-amz-meta-probe": "replaced",
            "Content-Type": "text/x-probe",
        },
    )
    if r.status != 200:
        return f"rejected ({r.brief()})"
    h = request("HEAD", key)
    got = h.headers.get("x-amz-meta-probe")
    if got == "replaced":
        return "honoured"
    return f"ignored (200, metadata now {got!r})"


def probe_metadata_replace():
    put("mr-key", b"content", {"x-amz-meta-probe": "original"})
    verdict = replace_self("mr-key")
    if get_body("mr-key") != b"content":
        verdict += "; CONTENT CHANGED"
    return verdict


def probe_marker_metadata():
    r = put("mk/", b"", {"x-amz-meta-probe": "marker"})
    if r.status != 200:
        return f"rejected ({r.brief()})"
    h = request("HEAD", "mk/")
    kept = h.headers.get("x-amz-meta-probe") == "marker"
    lst = request("GET", None, "list-type=2&prefix=mk%2F")
    listed = b"<Key>mk/</Key>" in lst.body
    etag = "with ETag" if r.headers.get("etag") else "no ETag in the PUT reply"
    replace = replace_self("mk/")
    return (
        f"{'kept' if kept else 'dropped'} on PUT, {'listed' if listed else 'NOT listed'}, "
        f"{etag}; self-copy REPLACE {replace}"
    )


def probe_multipart():
    c, etag = multipart("mp-key")
    if c.status != 200:
        return f"rejected ({c.brief()})"
    root = re.search(rb"<([A-Za-z]+)[ >]", c.body.split(b"?>", 1)[-1])
    size = len(get_body("mp-key") or b"")
    ok = size == PART_SIZE + 1024
    return (
        f"{'honoured' if ok else 'WRONG SIZE ' + str(size)}; reply <{root.group(1).decode() if root else '?'}>, "
        f"ETag {etag}"
    )


def probe_copy_etag():
    _, etag = multipart("ce-src")
    r = request("PUT", "ce-dst", headers={"x-amz-copy-source": f"/{BUCKET}/ce-src"})
    m = re.search(rb"<ETag>([^<]*)</ETag>", r.body)
    copied = m.group(1).decode().replace("&quot;", '"') if m else None
    if r.status != 200:
        return f"rejected ({r.brief()})"
    return "same as the source (" + str(copied) + ")" if copied == etag else f"new ({copied})"


def probe_delete_objects():
    for k in ("do-a", "do-b c"):
        put(k)
    xml = (
        "<Delete><Quiet>true</Quiet><Object><Key>do-a</Key></Object>"
        "<Object><Key>do-b c</Key></Object><Object><Key>do-never</Key></Object></Delete>"
    ).encode()
    import base64

    md5 = base64.b64encode(hashlib.md5(xml).digest()).decode()
    r = request("POST", None, "delete", headers={"Content-MD5": md5}, body=xml)
    if r.status != 200:
        return f"rejected ({r.brief()})"
    gone = all(request("HEAD", k).status == 404 for k in ("do-a", "do-b c"))
    errors = re.findall(rb"<Error>", r.body)
    return "honoured" if gone and not errors else f"partial (gone: {gone}, errors: {len(errors)})"


def probe_list_v2():
    for k in ("ls/a b+c", "ls/sub/x", "ls/é"):
        put(k)
    r = request("GET", None, "delimiter=%2F&encoding-type=url&list-type=2&prefix=ls%2F")
    if r.status != 200:
        return f"rejected ({r.brief()})"
    keys = [k.decode() for k in re.findall(rb"<Key>([^<]*)</Key>", r.body)]
    prefixes = [p.decode() for p in re.findall(rb"<CommonPrefixes><Prefix>([^<]*)</Prefix>", r.body)]
    echoed = b"<EncodingType>url</EncodingType>" in r.body
    want = {"ls/a b+c", "ls/é"}
    encoded = sorted(urllib.parse.unquote_plus(k) for k in keys) == sorted(want) and not (
        set(keys) & want
    )
    raw = sorted(keys) == sorted(want)
    delim = "delimiter honoured" if prefixes == ["ls/sub/"] or prefixes == ["ls%2Fsub%2F"] else f"prefixes {prefixes}"
    if echoed and encoded:
        enc = "keys url-encoded"
    elif not echoed and raw:
        enc = "encoding-type ignored: raw keys, not echoed"
    else:
        enc = f"MISMATCH: EncodingType echoed={echoed}, keys {keys}"
    return f"honoured ({delim}; {enc})"


def probe_list_uploads():
    r = request("GET", None, "uploads")
    return "honoured" if r.status == 200 else f"rejected ({r.brief()})"


def probe_file_beside_dir():
    a = put("fd")
    b = put("fd/b")
    return "honoured" if a.status == 200 and b.status == 200 else f"rejected (fd/b: {b.brief()})"


def probe_leading_slash():
    # A key "/ls" is sent as /BUCKET//ls.
    put("/lead")
    lst = request("GET", None, "list-type=2&prefix=%2F")
    if b"<Key>/lead</Key>" in lst.body:
        return "kept"
    stripped = request("HEAD", "lead").status == 200
    return "DROPPED (stored as 'lead')" if stripped else "rejected"


def probe_metadata_spaces():
    # The RFC 2047 form s3mount sends for " x y " (surrounding spaces would be trimmed by HTTP).
    put("sp-key", b"", {"x-amz-meta-v": "=?UTF-8?B?IHggeSA=?="})
    got = request("HEAD", "sp-key").headers.get("x-amz-meta-v")
    if got == "=?UTF-8?B?IHggeSA=?=":
        return "kept as sent"
    return f"CHANGED: sent '=?UTF-8?B?IHggeSA=?=', got back {got!r}"


def probe_bad_signature():
    bad = Credentials(CREDS.access_key, CREDS.secret_key[:-1] + ("A" if CREDS.secret_key[-1] != "A" else "B"))
    r = request("GET", None, "list-type=2", creds=bad)
    return r.brief()


PROBES = [
    ("conditional create (PUT If-None-Match: *)", probe_conditional_create),
    ("conditional create (CompleteMultipartUpload If-None-Match: *)", probe_conditional_complete),
    ("conditional replace (PUT If-Match)", probe_conditional_replace),
    ("conditional GET (If-Match)", probe_conditional_get),
    ("conditional copy (x-amz-copy-source-if-match)", probe_conditional_copy),
    ("metadata REPLACE (self-copy)", probe_metadata_replace),
    ("multipart upload", probe_multipart),
    ("DeleteObjects", probe_delete_objects),
    ("DeleteObject of a missing key", probe_delete_missing),
    ("ListParts of a completed upload", probe_parts_of_completed_upload),
    ("ListObjectsV2 (delimiter, encoding-type=url)", probe_list_v2),
    ("ListMultipartUploads", probe_list_uploads),
    ("`dir/` marker metadata", probe_marker_metadata),
    ("`a` beside `a/b`", probe_file_beside_dir),
    ("key with a leading `/`", probe_leading_slash),
    ("RFC 2047 metadata value", probe_metadata_spaces),
    ("ETag of a copy of a multipart object", probe_copy_etag),
    ("wrong signature", probe_bad_signature),
]


def main():
    r = request("PUT", None)
    if r.status != 200:
        sys.exit(f"server_probe: cannot create bucket {BUCKET}: {r.brief()}")
    for name, probe in PROBES:
        try:
            verdict = probe()
        except Exception as e:  # a probe that breaks says so, the others still run
            verdict = f"probe failed: {e!r}"
        print(f"{name}\t{verdict}", flush=True)


if __name__ == "__main__":
    main()
