#!/usr/bin/env bash
# bench/run.sh — s3mount against its peers (s3fs, rclone; Mountpoint if mount-s3 is in PATH) on
# the same local S3 server, the same workloads, in one run; prints a table of medians.
#
#   bench/run.sh [--runs N] [--quick] [--peers "s3fs rclone"] [-- extra bench.sh options]
#
# The workloads and their timing are those of our shared harness (bench.sh: ttfb, sequential
# and random reads, ls -l, writes until visible on the server, small files, cp -r, mv, rm),
# found at $BENCH_SH or ../shared/bench/bench.sh. The server is the patched s3s-fs built by
# ../shared/bench/build-s3s-fs.sh (moto is far too slow to measure a file system with).
# Needs root, /dev/fuse, fio, s3fs, rclone and GNU time (apt-get install -y fio s3fs rclone time), python3
# with boto3. Each tool runs --runs times (default 3); the table shows medians.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
BENCH_SH="${BENCH_SH:-$SHARED/bench/bench.sh}"
RUNS=3 PEERS="s3fs rclone" EXTRA=()
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --peers) PEERS=$2; shift 2 ;;
        --quick) EXTRA+=(--size-mib 256 --small 200 --ls 2000 --runtime 5); shift ;;
        --) shift; EXTRA+=("$@"); break ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v mount-s3 >/dev/null && PEERS="$PEERS mountpoint"
[ -x "$BENCH_SH" ] || { echo "bench harness not found at $BENCH_SH (set BENCH_SH)" >&2; exit 1; }
SRV=$("$SHARED/bench/build-s3s-fs.sh")
cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
BIN="$ROOT/target/release/s3mount"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"
RESULTS="$OUT/results-$(date +%Y%m%dT%H%M%S).tsv"
python3 -c 'import boto3' 2>/dev/null || pip install -q boto3 >&2
# Peak RSS of s3mount: GNU time writes one line per mount; the first mount of a run serves the
# first-byte and 1 GiB sequential reads.
TIME_BIN=$(command -v /usr/bin/time || true)
for run in $(seq "$RUNS"); do
    echo "== run $run/$RUNS: s3mount" >&2
    RSS="$OUT/rss-$run.txt"
    rm -f "$RSS"
    WRAP=${TIME_BIN:+$TIME_BIN -a -o $RSS -f %M}
    "$BENCH_SH" --name s3mount --start-server "$SRV" --results "$RESULTS" "${EXTRA[@]}" \
        --mount "$WRAP $BIN --endpoint {ENDPOINT} --region {REGION} --cache-dir {CACHE} --foreground {BUCKET} {MNT}" >&2 || true
    if [ -s "$RSS" ]; then
        kib=$(grep -E '^[0-9]+$' "$RSS" | head -1)
        [ -n "$kib" ] && printf '%s\ts3mount\tpeak_rss_seqread\t%s\tMiB\t-\tmax RSS of the mount serving the sequential read\n' \
            "$(date -Iseconds)" "$((kib / 1024))" >> "$RESULTS"
    fi
    for peer in $PEERS; do
        echo "== run $run/$RUNS: $peer" >&2
        "$BENCH_SH" --peer "$peer" --start-server "$SRV" --results "$RESULTS" "${EXTRA[@]}" >&2 || true
    done
done
python3 - "$RESULTS" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
units, tools, order = {}, [], []
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) < 6:
        continue
    _, tool, work, value, unit = f[:5]
    if tool not in tools:
        tools.append(tool)
    if work not in order:
        order.append(work)
    units[work] = unit
    try:
        rows[work][tool].append(float(value))
    except ValueError:
        pass
print(f"{'workload':<15} {'unit':<8} " + " ".join(f"{t:>12}" for t in tools))
for w in order:
    cells = []
    for t in tools:
        v = rows[w].get(t)
        # Peak RSS is measured for s3mount only: "-" for the others, FAIL for a workload that ran.
        missing = "-" if w.startswith("peak_rss") else "FAIL"
        cells.append(f"{statistics.median(v):>12.1f}" if v else f"{missing:>12}")
    print(f"{w:<15} {units[w]:<8} " + " ".join(cells))
PY
echo "raw figures: $RESULTS" >&2
