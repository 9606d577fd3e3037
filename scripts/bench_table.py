#!/usr/bin/env python3
"""Ratio tables from criterion's results (target/criterion/<group>/<bench>/<size>/new/estimates.json).

Usage: python3 scripts/bench_table.py [GROUP] [--base BENCH]

For every size, prints each benchmark's median time, throughput (bytes per second from the size),
and its ratio to the baseline benchmark measured in the same run (default: the one whose name
starts with "memcpy"). Ratio > 1 means faster than the baseline.
"""
import json
import os
import sys


def load(root):
    rows = {}
    for dirpath, _dirs, files in os.walk(root):
        if "estimates.json" in files and dirpath.endswith(os.sep + "new"):
            rel = os.path.relpath(os.path.dirname(dirpath), root)
            parts = rel.split(os.sep)
            if len(parts) < 2 or not parts[-1].isdigit():
                continue
            size = int(parts[-1])
            name = "/".join(parts[:-1])
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
            rows.setdefault(size, {})[name] = est["median"]["point_estimate"]
    return rows


def mode_of(name):
    """The destination mode a bench name ends in (criterion turns "x/cold" into "x_cold")."""
    tail = name.replace("/", "_").rsplit("_", 1)[-1]
    return tail if tail in ("warm", "cold", "plain", "digests") else ""


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    base = "memcpy"
    if "--base" in sys.argv:
        base = sys.argv[sys.argv.index("--base") + 1]
        args = [a for a in args if a != base]
    group = args[0] if args else "placement"
    root = os.path.join(os.path.dirname(__file__), "..", "target", "criterion", group)
    rows = load(root)
    if not rows:
        sys.exit(f"no criterion results under {root}")
    for size in sorted(rows):
        benches = rows[size]
        print(f"\n{group}, {size} bytes (median of criterion samples)")
        print(f"| bench | time | GB/s | ratio to {base} (same mode) |")
        print("|---|---:|---:|---:|")
        for name in sorted(benches):
            ns = benches[name]
            mode = mode_of(name)
            # The baseline: the bench named exactly BASE (plus this mode), else the first whose
            # name starts with BASE in this mode.
            exact = [t for c, t in benches.items()
                     if c.replace("/", "_") in (base, f"{base}_{mode}") and mode_of(c) in (mode, "")]
            loose = [t for c, t in sorted(benches.items())
                     if c.startswith(base) and mode_of(c) in (mode, "")]
            ref = (exact or loose or [None])[0]
            ratio = f"{ref / ns:.2f}" if ref else "-"
            unit = f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.1f} ns"
            print(f"| {name} | {unit} | {size / ns:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
