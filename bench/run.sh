#!/usr/bin/env bash
# bench/run.sh — s3mount against its peers (s3fs, rclone; Mountpoint if mount-s3 is in PATH) on
# the same local S3 server, the same workloads, in one run; prints a table of medians.
#
#   bench/run.sh [--runs N] [--quick] [--peers "s3fs rclone"] [--baseline REV] [-- extra bench.sh options]
#
# --baseline REV: also run s3mount as built at git revision REV (a worktree and a release build
# under target/bench/baseline), as the tool `s3mount@REV`, right after this checkout's in every
# run: an interleaved before/after comparison (--peers "" leaves the peers out).
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
RUNS=3 PEERS="s3fs rclone" EXTRA=() BASELINE=
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --peers) PEERS=$2; shift 2 ;;
        --baseline) BASELINE=$2; shift 2 ;;
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
BASE_BIN=""
if [ -n "$BASELINE" ]; then
    BASE_DIR="$OUT/baseline"
    rev=$(git -C "$ROOT" rev-parse --short "$BASELINE")
    git -C "$ROOT" worktree remove --force "$BASE_DIR" 2>/dev/null || rm -rf "$BASE_DIR"
    git -C "$ROOT" worktree add --detach "$BASE_DIR" "$rev" >&2
    # Its own target dir, kept between runs (target/bench/baseline-target): a rebuild of
    # another revision reuses the compiled dependencies.
    CARGO_TARGET_DIR="$OUT/baseline-target" cargo build --release --manifest-path "$BASE_DIR/Cargo.toml" >&2
    BASE_BIN="$OUT/baseline-target/release/s3mount"
fi
RESULTS="$OUT/results-$(date +%Y%m%dT%H%M%S).tsv"
python3 -c 'import boto3' 2>/dev/null || pip install -q boto3 >&2
# Peak RSS of s3mount: GNU time writes one line per mount; the first mount of a run serves the
# first-byte and 1 GiB sequential reads.
TIME_BIN=$(command -v /usr/bin/time || true)
# One s3mount run: tool name, binary, run number.
run_s3mount() {
    local name=$1 bin=$2 run=$3
    echo "== run $run/$RUNS: $name" >&2
    local rss="$OUT/rss-$name-$run.txt"
    rm -f "$rss"
    local wrap=${TIME_BIN:+$TIME_BIN -a -o $rss -f %M}
    "$BENCH_SH" --name "$name" --start-server "$SRV" --results "$RESULTS" "${EXTRA[@]}" \
        --mount "$wrap $bin --endpoint {ENDPOINT} --region {REGION} --cache-dir {CACHE} --foreground {BUCKET} {MNT}" >&2 || true
    if [ -s "$rss" ]; then
        kib=$(grep -E '^[0-9]+$' "$rss" | head -1)
        [ -n "$kib" ] && printf '%s\t%s\tpeak_rss_seqread\t%s\tMiB\t-\tmax RSS of the mount serving the sequential read\n' \
            "$(date -Iseconds)" "$name" "$((kib / 1024))" >> "$RESULTS"
    fi
    return 0
}
for run in $(seq "$RUNS"); do
    run_s3mount s3mount "$BIN" "$run"
    [ -n "$BASE_BIN" ] && run_s3mount "s3mount@$rev" "$BASE_BIN" "$run"
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
