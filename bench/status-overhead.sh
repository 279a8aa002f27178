#!/usr/bin/env bash
# bench/status-overhead.sh — what counting and publishing the figures of `s3mount status` costs:
# the same workloads through two mounts of one bucket on the fast local server (s3s-fs, see
# bench/run.sh), one as is and one with --no-status, in alternation (on, off, on, off, ...) so
# that a machine whose speed drifts slows both alike. The data cache is off on both, so every
# read goes to the server.
#
#   bench/status-overhead.sh [BINARY] [PAIRS]     (default: target/release/s3mount, 10)
#
# Workloads: `dd` of a 1 GiB object out of the mount; 1000 files of 4 KiB created with `cp` in a
# new directory. Prints, per workload: the median wall seconds with the figures on and off,
# the median of the per-pair ratios on/off (with min and max), and the median CPU milliseconds
# the mount's process spent per run, read from /proc/PID/stat.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/target/release/s3mount}"
PAIRS="${2:-10}"
SRV="${S3S_FS:-$HOME/.cache/s3mount-bench/bin/s3s-fs-bench}"
[ -x "$SRV" ] || SRV=$("$ROOT/../shared/bench/build-s3s-fs.sh")
WORK=$(mktemp -d /tmp/s3mount-status-bench.XXXXXX)
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/data/bench" "$WORK/on" "$WORK/off" "$WORK/cache-on" "$WORK/cache-off"
chmod 700 "$WORK/cache-on" "$WORK/cache-off"
head -c 4096 /dev/urandom >"$WORK/4k"
"$SRV" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/data" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
cleanup() {
    for m in on off; do umount "$WORK/$m" 2>/dev/null || umount -l "$WORK/$m" 2>/dev/null || true; done
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
sleep 0.5
for m in on off; do
    extra=()
    [[ $m == off ]] && extra=(--no-status)
    "$BIN" --endpoint "http://127.0.0.1:$port" --region us-east-1 --cache-dir "$WORK/cache-$m" \
        --cache-size 0 "${extra[@]}" bench "$WORK/$m"
done
# Seeded through a mount (s3s-fs wants its objects written through its API).
head -c $((1 << 30)) /dev/urandom >"$WORK/off/big.bin"
pid_of() { pgrep -f -- "--cache-dir $WORK/cache-$1 " | head -1; }
declare -A PID=([on]=$(pid_of on) [off]=$(pid_of off))
cpu_ms() { awk '{print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"'}' "/proc/$1/stat"; }

read_1g() { dd if="$1/big.bin" of=/dev/null bs=1M status=none; }
create_1000() {
    local d
    d="$1/small-$RANDOM$RANDOM"
    mkdir "$d"
    for i in $(seq 1000); do cp "$WORK/4k" "$d/f$i"; done
}

median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
for workload in read_1g create_1000; do
    "$workload" "$WORK/on" && "$workload" "$WORK/off" # warm-up
    : >"$WORK/runs"
    for _ in $(seq "$PAIRS"); do
        line=""
        for m in on off; do
            c0=$(cpu_ms "${PID[$m]}")
            t0=$(date +%s.%N)
            "$workload" "$WORK/$m"
            t1=$(date +%s.%N)
            c1=$(cpu_ms "${PID[$m]}")
            line+="$(echo "$t1 - $t0" | bc) $(echo "$c1 - $c0" | bc) "
        done
        echo "$line" >>"$WORK/runs" # wall_on cpu_on wall_off cpu_off
    done
    on=$(awk '{print $1}' "$WORK/runs" | median)
    off=$(awk '{print $3}' "$WORK/runs" | median)
    ratio=$(awk '{print $1 / $3}' "$WORK/runs" | median)
    lo=$(awk '{print $1 / $3}' "$WORK/runs" | sort -g | head -1)
    hi=$(awk '{print $1 / $3}' "$WORK/runs" | sort -g | tail -1)
    con=$(awk '{print $2}' "$WORK/runs" | median)
    coff=$(awk '{print $4}' "$WORK/runs" | median)
    printf '%-12s wall on %.3f s, off %.3f s; on/off %.3f (%.3f-%.3f); mount CPU on %s ms, off %s ms (%s pairs)\n' \
        "$workload" "$on" "$off" "$ratio" "$lo" "$hi" "$con" "$coff" "$PAIRS"
done
