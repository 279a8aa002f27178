"""Helper for scripts/s3-server and scripts/servers/*; run with the moto virtualenv's python.

Subcommands (all diagnostics go to stderr, results to stdout):
  freeport                 print a free TCP port on 127.0.0.1
  wait URL SECONDS PID PATH
                           poll URL+PATH until PID listens on URL's port and any HTTP
                           reply comes back (moto: PATH /moto-api/, its own API, which does
                           not use up INITIAL_NO_AUTH_ACTION_COUNT); fail if PID dies
  setup URL                (moto) with the server's unauthenticated requests (exactly
                           SETUP_REQUESTS of them) create an IAM user, an inline allow-all
                           policy and an access key.
                           Prints AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=...
  check-auth URL           check that authentication is on, with AWS_ACCESS_KEY_ID /
                           AWS_SECRET_ACCESS_KEY from the environment: a wrong secret gets
                           403 (moto: SignatureDoesNotMatch), the right key lists buckets
  demo URL BUCKET          create BUCKET with a few demo objects, using the
                           AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment
"""

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request

REGION = "us-east-1"
USER = "s3mount-test"
# CreateUser, PutUserPolicy, CreateAccessKey: scripts/s3-server sets
# INITIAL_NO_AUTH_ACTION_COUNT to this number.
SETUP_REQUESTS = 3


def log(msg):
    print(f"s3-server: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


def freeport():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    print(port)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


def listens(pid, port):
    """True if process pid owns a listening TCP socket on 127.0.0.1:port.

    Guards against a port taken by another server between our choice and moto's
    bind: then moto exits, but the other server might answer the probe."""
    want = f"0100007F:{int(port):04X}"
    inodes = set()
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == want and fields[3] == "0A":  # 0A = LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def wait(url, seconds, pid, path):
    deadline = time.monotonic() + float(seconds)
    probe = url.rstrip("/") + path
    last = None
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            die(f"the server (pid {pid}) exited before answering")
        if not listens(pid, url.rsplit(":", 1)[1].rstrip("/")):
            last = "not listening yet"
            time.sleep(0.1)
            continue
        # Any HTTP reply means the server is up (an unsigned S3 request gets 403).
        try:
            with urllib.request.urlopen(probe, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        time.sleep(0.1)
    die(f"the server did not answer {probe} within {seconds} s (last: {last})")


def client(service, url, key, secret):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def setup(url):
    from botocore.exceptions import ClientError

    # Dummy credentials: these requests are inside the no-auth count, so
    # moto does not check them, but botocore insists on signing something.
    iam = client("iam", url, "AKIAIOSFODNN7EXAMPLE", "dummy-secret-for-setup")
    try:
        iam.create_user(UserName=USER)
        iam.put_user_policy(
            UserName=USER,
            PolicyName="allow-all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        ak = iam.create_access_key(UserName=USER)["AccessKey"]
    except ClientError as e:
        die(f"IAM setup failed (was the server fresh?): {e}")
    print(f"AWS_ACCESS_KEY_ID={ak['AccessKeyId']}")
    print(f"AWS_SECRET_ACCESS_KEY={ak['SecretAccessKey']}")


def check_auth(url):
    from botocore.exceptions import ClientError

    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    # Auth must be on: a wrong secret is refused ...
    bad = client("s3", url, key, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    try:
        bad.list_buckets()
        die("a request signed with a wrong secret succeeded: authentication is OFF")
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # moto and s3s answer SignatureDoesNotMatch; Garage 2.5 answers AccessDenied.
        if status != 403:
            die(f"wrong secret gave {status} {code}, expected 403")
    # ... and the right key is accepted.
    good = client("s3", url, key, secret)
    try:
        good.list_buckets()
    except ClientError as e:
        die(f"a correctly signed request failed: {e}")
    log(f"auth verified (wrong secret -> 403 {code}, right key -> 200)")


def demo(url, bucket):
    s3 = client(
        "s3", url, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    )
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key="hello.txt",
        Body=b"hello from s3mount\n",
        ContentType="text/plain",
        Metadata={"color": "red", "owner": "demo"},
    )
    s3.put_object(
        Bucket=bucket,
        Key="docs/readme.md",
        Body=b"# Demo bucket\n\nServed by moto, mounted by s3mount.\n",
        ContentType="text/markdown",
    )
    s3.put_object(
        Bucket=bucket,
        Key="docs/guide/intro.txt",
        Body=b"Directories are key prefixes; this file lives under docs/guide/.\n",
        ContentType="text/plain",
    )
    s3.put_object(Bucket=bucket, Key="photos/", Body=b"")
    s3.put_object(
        Bucket=bucket,
        Key="data/random.bin",
        Body=os.urandom(1 << 20),
        ContentType="application/octet-stream",
    )
    log(f"bucket {bucket!r} created with 5 objects")


def main(argv):
    if not argv:
        die(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "freeport" and not args:
        freeport()
    elif cmd == "wait" and len(args) == 4:
        wait(*args)
    elif cmd == "setup" and len(args) == 1:
        setup(*args)
    elif cmd == "check-auth" and len(args) == 1:
        check_auth(*args)
    elif cmd == "demo" and len(args) == 2:
        demo(*args)
    else:
        die(f"bad arguments: {' '.join(argv)}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
