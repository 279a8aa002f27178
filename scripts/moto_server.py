"""moto_server, with a fix for a race in moto 5.2.5 that s3mount's tests run into.

Usage (as moto_server): moto_server.py -H 127.0.0.1 -p PORT. scripts/s3-server starts it.

The fix: moto computes an object's ETag lazily, the first time a request asks for it, by
reading the object's buffer (seek to 0, then read), and it does so without the object's lock.
A CopyObject inserts the new object first and computes its ETag for the reply afterwards; a
HEAD or GET of the same key arriving meanwhile computes it at the same time, the two threads
move one file position, and one of them stores or returns the MD5 of the wrong bytes. The
copy's reply then names an ETag that the server's own `If-Match` refuses (412) — measured here:
7 copies of 8 of an 18 MiB multipart object while three threads sent HEADs. S3 itself never
does this. Computing the ETag under the object's lock (the lock moto already takes to read
the object's bytes) removes the race and changes nothing else.
"""

import sys

from moto.s3 import models
from moto.server import main

_lazy_etag = models.FakeKey.etag


def _etag_under_lock(self):
    with self.lock:
        return _lazy_etag.fget(self)


models.FakeKey.etag = property(_etag_under_lock)

if __name__ == "__main__":
    sys.exit(main())
