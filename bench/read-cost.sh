#!/usr/bin/env bash
# bench/read-cost.sh — what reads cost the mount: throughput, and the CPU seconds the mount
# process spends per GiB read (utime + stime of its /proc/PID/stat, all threads), next to the
# reader's own; random 4 KiB reads; peak RSS with many parallel readers. Against the fast local
# server (s3s-fs, see bench/run.sh), one mount process at a time, so the CPU figures are the
# mount's alone. Noise: the CPU figures hold on a busy machine far better than the MiB/s.
#
#   bench/read-cost.sh [--runs N] [--only LIST] [--size-mib N] [--runtime S] [--readers N]
#                      [--peer s3fs] [--bin BINARY] [-- extra s3mount options]
#
# LIST: comma-separated of
#   cold     dd bs=1M of the big object on a fresh mount with an empty cache dir
#   warm     the same read again on the same mount (page cache, data cache)
#   remount  a fresh mount on the cache dir the cold read filled
#   rand     fio psync randread bs=4k, 1 job, --runtime s, fresh mount, empty cache dir
#   par      --readers parallel dd of as many 256 MiB objects, fresh mount: peak RSS
# (default cold,warm,remount,rand). Prints one TSV line per measure:
#   label workload MiB/s-or-IOPS wall-s mount-cpu-s mount-cpu-s/GiB reader-cpu-s peak-rss-MiB
# The scratch dir ($WORK, default /tmp/s3mount-read-cost) keeps the server's data between calls.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=1 ONLY=cold,warm,remount,rand SIZE_MIB=1024 RUNTIME=20 READERS=16 PEER="" BIN="" EXTRA=()
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --size-mib) SIZE_MIB=$2; shift 2 ;;
        --runtime) RUNTIME=$2; shift 2 ;;
        --readers) READERS=$2; shift 2 ;;
        --peer) PEER=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
BIN="${BIN:-$ROOT/target/release/s3mount}"
SRV="${S3S_FS:-$HOME/.cache/s3mount-bench/bin/s3s-fs-bench}"
[ -x "$SRV" ] || SRV=$("$ROOT/../shared/bench/build-s3s-fs.sh")
WORK="${WORK:-/tmp/s3mount-read-cost}"
LABEL=${PEER:-$(basename "$BIN")${EXTRA:+ ${EXTRA[*]}}}
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_DEFAULT_REGION=us-east-1
TICK=$(getconf CLK_TCK)
mkdir -p "$WORK/data" "$WORK/mnt"
MNT=$WORK/mnt
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ENDPOINT=http://127.0.0.1:$port
"$SRV" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/data" > "$WORK/server.log" 2>&1 &
SERVER_PID=$! MOUNT_PID="" CACHE=""
umount_it() {
    if mountpoint -q "$MNT"; then
        fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || umount -l "$MNT"
    fi
    [ -n "$MOUNT_PID" ] && wait "$MOUNT_PID" 2>/dev/null || true
    MOUNT_PID=""
}
cleanup() {
    umount_it
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    [ -n "$CACHE" ] && rm -rf "$CACHE"
}
trap cleanup EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

# The big object, and 256 MiB objects for the parallel readers (server-side copies of one).
python3 - "$ENDPOINT" "$WORK" "$SIZE_MIB" "$([[ ",$ONLY," == *,par,* ]] && echo "$READERS" || echo 0)" <<'PY' >&2
import os, random, sys
import boto3
from botocore.config import Config
from boto3.s3.transfer import TransferConfig
endpoint, work, mib, readers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
try:
    s3.head_bucket(Bucket="bench")
except Exception:
    s3.create_bucket(Bucket="bench")
def size(key):
    try:
        return s3.head_object(Bucket="bench", Key=key)["ContentLength"]
    except Exception:
        return None
def put_random(key, n_mib, seed):
    if size(key) == n_mib << 20:
        return
    path = os.path.join(work, "seed.tmp")
    rng = random.Random(seed)
    with open(path, "wb") as f:
        for _ in range(n_mib):
            f.write(rng.randbytes(1 << 20))
    # One PUT: this server's multipart completion is slow, and one ETag form is enough here.
    s3.upload_file(path, "bench", key, Config=TransferConfig(multipart_threshold=1 << 40))
    os.remove(path)
put_random("obj", mib, 1)
if readers:
    put_random("par/src", 256, 2)
    for i in range(readers):
        if size(f"par/{i:02d}") != 256 << 20:
            s3.copy_object(Bucket="bench", Key=f"par/{i:02d}", CopySource={"Bucket": "bench", "Key": "par/src"})
PY

mount_it() { # fresh mount on $CACHE (created if empty)
    [ -n "$CACHE" ] || CACHE=$(mktemp -d "$WORK/cache.XXXXXX")
    if [ "$PEER" = s3fs ]; then
        printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$WORK/passwd"
        chmod 600 "$WORK/passwd"
        s3fs -f bench "$MNT" -o passwd_file="$WORK/passwd" -o url="$ENDPOINT" \
            -o use_path_request_style -o endpoint=us-east-1 >> "$WORK/mount.log" 2>&1 &
    else
        "$BIN" --endpoint "$ENDPOINT" --region us-east-1 --force-path-style --cache-dir "$CACHE" \
            --foreground "${EXTRA[@]}" bench "$MNT" >> "$WORK/mount.log" 2>&1 &
    fi
    MOUNT_PID=$!
    for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
    mountpoint -q "$MNT" || { tail -5 "$WORK/mount.log" >&2; exit 1; }
    ls "$MNT" > /dev/null
}
fresh_cache() { [ -n "$CACHE" ] && rm -rf "$CACHE"; CACHE=""; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$MOUNT_PID/stat"; }
peak_rss_mib() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$MOUNT_PID/status"; }
now() { date +%s.%N; }

# measure WORKLOAD MIB COMMAND...: run COMMAND (the reader) and print the line.
measure() {
    local work=$1 mib=$2; shift 2
    local c0 c1 t0 t1 r
    c0=$(cpu_ticks); t0=$(now)
    /usr/bin/time -o "$WORK/time.out" -f '%U %S' "$@" > /dev/null 2>&1
    r=$(tail -1 "$WORK/time.out")
    t1=$(now); c1=$(cpu_ticks)
    python3 - "$LABEL" "$work" "$mib" "$t0" "$t1" "$c0" "$c1" "$TICK" "$r" "$(peak_rss_mib)" <<'PY'
import sys
label, work, mib, t0, t1, c0, c1, tick, r, rss = sys.argv[1:]
wall = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(tick)
reader = sum(float(x) for x in r.split()) if r.strip() else float("nan")
print(f"{label}\t{work}\t{int(mib) / wall:.1f}\t{wall:.2f}\t{cpu:.2f}\t{cpu / (int(mib) / 1024):.2f}\t{reader:.2f}\t{rss}")
PY
}

echo -e "label\tworkload\tMiB/s|IOPS\twall_s\tmount_cpu_s\tcpu_s_per_GiB\treader_cpu_s\tpeak_rss_MiB"
want() { [[ ",$ONLY," == *",$1,"* ]]; }
for _ in $(seq "$RUNS"); do
    if want cold || want warm || want remount; then
        fresh_cache; mount_it
        want cold && measure cold "$SIZE_MIB" dd if="$MNT/obj" of=/dev/null bs=1M
        want warm && measure warm "$SIZE_MIB" dd if="$MNT/obj" of=/dev/null bs=1M
        umount_it
        if want remount; then
            mount_it
            measure remount "$SIZE_MIB" dd if="$MNT/obj" of=/dev/null bs=1M
            umount_it
        fi
    fi
    if want rand; then
        fresh_cache; mount_it
        c0=$(cpu_ticks)
        fio --name=r --filename="$MNT/obj" --readonly --rw=randread --bs=4k --ioengine=psync \
            --numjobs=1 --runtime="$RUNTIME" --time_based --output-format=json \
            --output="$WORK/fio.json" > /dev/null 2>&1
        c1=$(cpu_ticks)
        python3 - "$LABEL" "$WORK/fio.json" "$c0" "$c1" "$TICK" "$RUNTIME" "$(peak_rss_mib)" <<'PY'
import json, sys
label, path, c0, c1, tick, runtime, rss = sys.argv[1:]
j = json.load(open(path))["jobs"][0]["read"]
cpu = (int(c1) - int(c0)) / int(tick)
print(f"{label}\trand\t{j['iops']:.0f}\t{runtime}\t{cpu:.2f}\t-\t-\t{rss}")
PY
        umount_it
    fi
    if want par; then
        fresh_cache; mount_it
        pids=()
        c0=$(cpu_ticks); t0=$(now)
        for i in $(seq 0 $((READERS - 1))); do
            dd if="$MNT/par/$(printf %02d "$i")" of=/dev/null bs=1M status=none & pids+=($!)
        done
        wait "${pids[@]}"
        t1=$(now); c1=$(cpu_ticks)
        python3 -c "import sys; l,r,t0,t1,c0,c1,tk,rss=sys.argv[1:]; w=float(t1)-float(t0); m=256*int(r); c=(int(c1)-int(c0))/int(tk); print(f'{l}\tpar{r}\t{m/w:.1f}\t{w:.2f}\t{c:.2f}\t{c/(m/1024):.2f}\t-\t{rss}')" \
            "$LABEL" "$READERS" "$t0" "$t1" "$c0" "$c1" "$TICK" "$(peak_rss_mib)"
        umount_it
    fi
done
fresh_cache
