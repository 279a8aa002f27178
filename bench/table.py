#!/usr/bin/env python3
"""bench/table.py RESULTS.tsv — the Markdown table of docs/performance.md from one bench/run.sh run.

Medians per tool and workload; the best peer (s3fs, rclone, Mountpoint: never an s3mount
build); s3mount's ratio to it (for a time in seconds, the peer's time over s3mount's, so that
above 1 is always better); issue 13's target for the workload, and whether the ratio meets it.
A baseline build (`bench/run.sh --baseline REV`, tool `s3mount@REV`) gets its own column.
"""
import collections
import statistics
import sys

# Issue 13's targets: the ratio to the best peer s3mount must reach (higher is better).
TARGETS = {
    "seqread_cold": 1.3,
    "seqread_warm": 3.0,
    "randread_4k": 1.0,  # against s3fs
    "ls_warm": 2.0,  # warm `ls -l` in at most half rclone's time
    "create_small": 2.0,
    "cp_dir100": 1.5,
    "cp_inside": 10.0,
    "rm_small": 1.0,
}
# Against one named peer rather than the best one.
AGAINST = {"randread_4k": "s3fs", "ls_warm": "rclone"}
LOWER_IS_BETTER_UNITS = {"s", "ms"}


def main(path):
    values = collections.defaultdict(lambda: collections.defaultdict(list))
    units, tools, order = {}, [], []
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) < 6:
            continue
        _, tool, work, value, unit = f[:5]
        try:
            v = float(value)
        except ValueError:
            continue
        if tool not in tools:
            tools.append(tool)
        if work not in order:
            order.append(work)
        units[work] = unit
        values[work][tool].append(v)
    ours = [t for t in tools if t.startswith("s3mount")]
    peers = [t for t in tools if not t.startswith("s3mount")]
    head = ["workload", "unit"] + ours + peers + ["best peer", "ratio", "target", "met"]
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join(["---", "---"] + ["---:"] * (len(head) - 2)) + " |")
    for w in order:
        med = {t: statistics.median(v) for t, v in values[w].items() if v}
        lower = units[w] in LOWER_IS_BETTER_UNITS
        cells = [w, units[w]]
        cells += [fmt(med.get(t)) for t in ours + peers]
        against = [AGAINST[w]] if w in AGAINST else peers
        known = [(med[p], p) for p in against if p in med]
        ratio = None
        if known and "s3mount" in med:
            best, name = (min if lower else max)(known)
            mine = med["s3mount"]
            ratio = (best / mine if lower else mine / best) if mine and best else None
            cells.append(name)
        else:
            cells.append("–")
        cells.append(f"{ratio:.2f}×" if ratio is not None else "–")
        target = TARGETS.get(w)
        cells.append(f"≥ {target}×" if target else "–")
        if target is None or ratio is None:
            cells.append("–")
        else:
            cells.append("yes" if ratio >= target else "**no**")
        print("| " + " | ".join(cells) + " |")


def fmt(v):
    if v is None:
        return "–"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.3f}"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench/table.py RESULTS.tsv")
    main(sys.argv[1])
