#!/usr/bin/env bash
# bench/scale.sh — what s3mount's costs do as buckets grow: `ls -f` and `ls -l` of directories
# of 1 000, 10 000 and 100 000 keys, and `find` over 100 000 keys in 1 000 directories, each
# on a fresh mount, with the time and the mount's peak RSS; and the memory the mount holds per
# entry it knows (bytes per inode: its RSS after `ls -l` of the largest directory, less its RSS
# before, over the keys).
#
#   bench/scale.sh [--sizes "1000 10000 100000"] [--tree 1000x100] [--tree-bytes N] [--runs N]
#                  [--binary PATH] [--endpoint URL] [--mount-args "ARGS"]
#
# The server is Garage (scripts/s3-server --server garage; installed by it): the patched s3s-fs
# of bench/run.sh rescans a directory for every page of a listing (166 s for 100 000 keys), so
# it cannot serve here. It is started for the run, and seeded with empty objects (parallel PUTs
# through the library: examples/seed_keys.rs, 64 in flight); --endpoint URL uses a server
# already running instead (credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), seeded
# only with what it lacks, so repeated runs skip the seeding. Each workload runs --runs times
# (default 3, interleaved: every workload once, then again); the table shows medians, and the
# largest peak RSS. --mount-args adds options to every mount (e.g. "--listing-head-limit 0").
# --tree-bytes N: the tree's objects have N bytes (default 0) — over 4 KiB they can only be
# regular files, and `find` costs no HEAD for them (docs/performance.md). --sizes "" skips the
# flat directories.
# Needs root, /dev/fuse, GNU time (apt-get install -y time) and python3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES="1000 10000 100000" TREE="1000x100" TREE_BYTES=0 RUNS=3 BIN="" ENDPOINT="" SEED_THREADS=64 MOUNT_ARGS=""
while [ $# -gt 0 ]; do
    case $1 in
        --sizes) SIZES=$2; shift 2 ;;
        --tree) TREE=$2; shift 2 ;;
        --tree-bytes) TREE_BYTES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --binary) BIN=$2; shift 2 ;;
        --endpoint) ENDPOINT=$2; shift 2 ;;
        --mount-args) MOUNT_ARGS=$2; shift 2 ;;
        -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/,""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
TREE_DIRS=${TREE%x*} TREE_KEYS=${TREE#*x} TREE_PREFIX=tree
[ "$TREE_BYTES" -gt 0 ] && TREE_PREFIX=tree-${TREE_BYTES}b
for t in python3 mountpoint; do
    command -v $t >/dev/null || { echo "missing tool: $t" >&2; exit 2; }
done
TIME_BIN=/usr/bin/time
[ -x $TIME_BIN ] || { echo "missing GNU time (apt-get install -y time)" >&2; exit 2; }
if [ -z "$BIN" ]; then
    cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
    BIN="$ROOT/target/release/s3mount"
fi
OUT="$ROOT/target/bench"
WORK=$(mktemp -d /tmp/s3mount-scale.XXXXXX)
mkdir -p "$OUT" "$WORK/mnt"
RESULTS="$OUT/scale-$(date +%Y%m%dT%H%M%S).tsv"
BUCKET=scale
SERVER_PID="" MOUNT_PID=""

cleanup() {
    mountpoint -q "$WORK/mnt" && umount "$WORK/mnt" 2>/dev/null
    [ -n "$MOUNT_PID" ] && wait "$MOUNT_PID" 2>/dev/null
    [ -n "$SERVER_PID" ] && "$ROOT/scripts/s3-server" stop "$SERVER_PID" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$ENDPOINT" ]; then
    S3_ENDPOINT=$ENDPOINT S3_SERVER_LOG="(not ours)"
else
    set -a
    eval "$("$ROOT/scripts/s3-server" --server garage start --state-dir "$WORK/garage")"
    set +a
    SERVER_PID=$S3_SERVER_PID
fi
echo "# server at $S3_ENDPOINT (log $S3_SERVER_LOG)" >&2

SEEDER="$ROOT/target/release/examples/seed_keys"
cargo build --release --example seed_keys --manifest-path "$ROOT/Cargo.toml" >&2
seed() { # PREFIX DIRS KEYS_PER_DIR [BYTES]: parallel PUTs through the library, only of missing keys
    local want=$(($2 * $3)) have t0=$SECONDS
    echo "# seeding $1: $want keys ($2 directories of $3)" >&2
    have=$(AWS_ENDPOINT_URL=$S3_ENDPOINT "$SEEDER" "$BUCKET" "$1" "$2" "$3" "$SEED_THREADS" "${4:-0}")
    [ "$have" -eq "$want" ] || { echo "seeding $1: $have keys of $want" >&2; exit 1; }
    echo "# $1: $have keys in $((SECONDS - t0)) s" >&2
}
for n in $SIZES; do seed "flat$n" 1 "$n"; done
seed "$TREE_PREFIX" "$TREE_DIRS" "$TREE_KEYS" "$TREE_BYTES"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mount_fresh() {
    local cache="$WORK/cache" pid
    rm -rf "$cache" "$WORK/rss"
    mkdir -p "$cache"
    $TIME_BIN -o "$WORK/rss" -f %M "$BIN" --endpoint "$S3_ENDPOINT" --region us-east-1 \
        --cache-dir "$cache" --foreground $MOUNT_ARGS "$BUCKET" "$WORK/mnt" >> "$WORK/mount.log" 2>&1 &
    MOUNT_PID=$!
    for _ in $(seq 300); do mountpoint -q "$WORK/mnt" && break; sleep 0.1; done
    mountpoint -q "$WORK/mnt" || { echo "mount failed; log:" >&2; tail -5 "$WORK/mount.log" >&2; exit 1; }
    ls "$WORK/mnt" > /dev/null
    # The s3mount process under GNU time.
    MOUNT_S3=$(pgrep -P "$MOUNT_PID" -x s3mount || echo "$MOUNT_PID")
}
umount_it() { # sets PEAK: the peak RSS in MiB of the mount just ended. Not to be called in a
    # $(...) subshell: only this shell can wait for the mount's GNU time.
    umount "$WORK/mnt"
    wait "$MOUNT_PID" 2>/dev/null || true
    MOUNT_PID=""
    PEAK=$(( $(grep -E '^[0-9]+$' "$WORK/rss" | tail -1) / 1024 ))
}
timed() { # COMMAND... -> wall seconds; the command's output is counted, not kept
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > "$WORK/out"
    t1=$(date +%s.%N)
    python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$t0" "$t1"
}
report() { # workload keys seconds rss_mib detail
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -Is)" "$1" "$2" "$3" "$4" "$5" >> "$RESULTS"
    printf '%-8s %7s keys %8s s  peak %4s MiB  %s\n' "$1" "$2" "$3" "$4" "$5" >&2
}
check_lines() { # EXPECTED
    local got
    got=$(wc -l < "$WORK/out")
    [ "$got" -eq "$1" ] || { echo "listed $got lines, expected $1" >&2; exit 1; }
}

for run in $(seq "$RUNS"); do
    echo "== run $run/$RUNS" >&2
    for n in $SIZES; do
        mount_fresh
        s=$(timed ls -f "$WORK/mnt/flat$n")
        check_lines $((n + 2))
        umount_it
        report ls_f "$n" "$s" "$PEAK" "ls -f, fresh mount"

        mount_fresh
        before=$(rss_kib "$MOUNT_S3")
        s=$(timed ls -l "$WORK/mnt/flat$n")
        check_lines $((n + 1))
        after=$(rss_kib "$MOUNT_S3")
        w=$(timed ls -l "$WORK/mnt/flat$n")
        per=$(( (after - before) * 1024 / n ))
        umount_it
        report ls_l "$n" "$s" "$PEAK" "ls -l, fresh mount; again ${w}s; RSS +$(( (after - before) / 1024 )) MiB = $per bytes per entry"
    done
    mount_fresh
    s=$(timed find "$WORK/mnt/$TREE_PREFIX")
    check_lines $((TREE_DIRS * TREE_KEYS + TREE_DIRS + 1))
    umount_it
    report find $((TREE_DIRS * TREE_KEYS)) "$s" "$PEAK" "find over $TREE_DIRS directories ($TREE_BYTES-byte objects), fresh mount"
done

python3 - "$RESULTS" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    _, work, keys, secs, rss, detail = line.rstrip("\n").split("\t")
    k = (work, int(keys))
    if k not in order:
        order.append(k)
    per = detail.split("= ")[-1].split(" ")[0] if "bytes per entry" in detail else ""
    rows[k].append((float(secs), int(rss), per))
print(f"{'workload':<8} {'keys':>7} {'median s':>9} {'s/1000 keys':>12} {'peak RSS MiB':>13} {'bytes/entry':>12}")
for k in order:
    v = rows[k]
    s = statistics.median(x[0] for x in v)
    rss = max(x[1] for x in v)
    per = [int(x[2]) for x in v if x[2]]
    print(f"{k[0]:<8} {k[1]:>7} {s:>9.2f} {s / k[1] * 1000:>12.3f} {rss:>13} "
          f"{(str(int(statistics.median(per))) if per else '-'):>12}")
PY
echo "raw figures: $RESULTS" >&2
