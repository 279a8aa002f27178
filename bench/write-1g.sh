#!/usr/bin/env bash
# bench/write-1g.sh — how long `dd` of 1 GiB into the mount takes until close() returns (close
# returns only once the object is complete on the server), and how much of that is spent after
# the last write (the upload left for close). Against the fast local server (s3s-fs, see
# bench/run.sh); moto would measure only itself.
#
#   bench/write-1g.sh [BINARY] [SIZE_MIB]     (default: target/release/s3mount, 1024)
#   (RUST_LOG=s3mount=debug KEEP_LOG=FILE keeps the mount's log)
#
# Prints: dd's time until close returned, then the same written by python3 with the writes and
# the close timed separately.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/target/release/s3mount}"
MIB="${2:-1024}"
SRV="${S3S_FS:-$HOME/.cache/s3mount-bench/bin/s3s-fs-bench}"
[ -x "$SRV" ] || SRV=$("$ROOT/../shared/bench/build-s3s-fs.sh")
WORK=$(mktemp -d /tmp/s3mount-write1g.XXXXXX)
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/data/bench" "$WORK/mnt" "$WORK/cache"
"$SRV" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/data" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
cleanup() {
    fusermount3 -u "$WORK/mnt" 2>/dev/null || umount -l "$WORK/mnt" 2>/dev/null || true
    [ -n "${MOUNT_PID:-}" ] && wait "$MOUNT_PID" 2>/dev/null || true
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    [ -n "${KEEP_LOG:-}" ] && cp "$WORK/mount.log" "$KEEP_LOG"
    rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
"$BIN" --endpoint "http://127.0.0.1:$port" --region us-east-1 --force-path-style \
    --cache-dir "$WORK/cache" --foreground bench "$WORK/mnt" > "$WORK/mount.log" 2>&1 &
MOUNT_PID=$!
for _ in $(seq 100); do mountpoint -q "$WORK/mnt" && break; sleep 0.1; done
mountpoint -q "$WORK/mnt" || { cat "$WORK/mount.log" >&2; exit 1; }
t0=$(date +%s.%N)
dd if=/dev/zero of="$WORK/mnt/dd" bs=1M count="$MIB" status=none
t1=$(date +%s.%N)
python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); print(f'dd {sys.argv[3]} MiB until close returned: {t:.2f} s, {int(sys.argv[3])/t:.0f} MiB/s')" "$t0" "$t1" "$MIB"
# python3 times the writes and the close separately (dd cannot).
python3 - "$WORK/mnt/f" "$MIB" <<'PY'
import os, sys, time
path, mib = sys.argv[1], int(sys.argv[2])
buf = b"\0" * (1 << 20)
t0 = time.monotonic()
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for _ in range(mib):
    os.write(fd, buf)
t1 = time.monotonic()
os.close(fd)
t2 = time.monotonic()
print(f"{mib} MiB: writes {t1 - t0:.2f} s, close {t2 - t1:.2f} s, total {t2 - t0:.2f} s, "
      f"{mib / (t2 - t0):.0f} MiB/s until on the server")
PY
