#!/usr/bin/env python3
"""Runs the benches several times and prints the BENCHMARKS.md tables.

Usage (from the repository root; honours CARGO_TARGET_DIR):

    python3 benches/summarize.py [RUNS]        # default 5 runs

Each run is `cargo bench --bench core --bench layer` (criterion) followed by
`cargo bench --bench throughput`. For a criterion bench the value of one run
is criterion's mean time per iteration; for the throughput phases it is the
printed figure. The tables give, per row, the median over the runs, the
min-max over the runs, and the number of runs. The load average is sampled
before every run and reported, since the machine is shared.
"""

import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys


def sh(args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", "target")


def criterion_means():
    out = {}
    for bench in glob.glob(os.path.join(target_dir(), "criterion", "**", "new", "benchmark.json"), recursive=True):
        with open(bench) as f:
            full_id = json.load(f)["full_id"]
        with open(os.path.join(os.path.dirname(bench), "estimates.json")) as f:
            out[full_id] = json.load(f)["mean"]["point_estimate"]
    return out


PATTERNS = {
    "track_ai caller, backend up: mean (µs)": (r"track_ai \(backend up\): .*? mean=([\d.]+)", 1),
    "track_ai caller, backend up: p50 (µs)": (r"track_ai \(backend up\): .*? p50=([\d.]+)", 1),
    "track_ai caller, backend up: p99 (µs)": (r"track_ai \(backend up\): .*? p99=([\d.]+)", 1),
    "1M burst: delivered events/s": (r"delivered throughput: (\d+) events/s", 1),
    "1M burst: loss": (r"^loss=(\d+)", 1),
    "1M burst: duplicates": (r"^loss=\d+ duplicates=(\d+)", 1),
    "1M burst: producer QueueFull retries": (r"queue_full retries=(\d+)", 1),
    "1M burst: peak RSS (MiB)": (r"peak during run ([\d.]+) MiB", 1),
    "1M burst: worker CPU per event (µs)": (r"worker thread [\d.]+ s \(([\d.]+) µs/event\)", 1),
    "1M burst: sink CPU per event (µs)": (r"sink process [\d.]+ s \(([\d.]+) µs/event\)", 1),
    "backend down: caller mean (µs)": (r"track_ai \(backend down\): .*? mean=([\d.]+)", 1),
    "backend down: caller p99 (µs)": (r"track_ai \(backend down\): .*? p99=([\d.]+)", 1),
    "backend down: p99 down / p99 up": (r"p99 down / p99 up = ([\d.]+)", 1),
    "backend down: peak RSS (MiB)": (r"after calls [\d.]+ MiB, peak ([\d.]+) MiB", 1),
    "backend down: accounting exact (1 = yes)": (r"accounting: .*?: (exact|MISMATCH) \|", 1),
    "spans: worker CPU per span (µs)": (r"= ([\d.]+) µs/span", 1),
    "#[tool] sync fn: mean (µs)": (r"#\[tool\] sync fn .*? mean=([\d.]+)", 1),
    "#[tool] sync fn: p50 (µs)": (r"#\[tool\] sync fn .*? p50=([\d.]+)", 1),
    "#[tool] sync fn: p99 (µs)": (r"#\[tool\] sync fn .*? p99=([\d.]+)", 1),
    "#[tool] sync fn: caller CPU per call (µs)": (r"caller thread ([\d.]+) µs, worker", 1),
}


def parse_throughput(text):
    out = {}
    for name, (pat, group) in PATTERNS.items():
        m = re.search(pat, text, re.M)
        if m:
            v = m.group(group)
            out[name] = 1.0 if v == "exact" else 0.0 if v == "MISMATCH" else float(v)
    return out


def fmt_ns(ns):
    return f"{ns / 1000:.3f} µs" if ns >= 1000 else f"{ns:.1f} ns"


def fmt_num(v):
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else f"{int(v)}"


def table(rows, fmt):
    print("| bench | median | min–max | runs |")
    print("| --- | --- | --- | --- |")
    for name, values in rows.items():
        print(f"| {name} | {fmt(statistics.median(values))} | {fmt(min(values))} – {fmt(max(values))} | {len(values)} |")


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    # Stale results of renamed benches must not show up.
    shutil.rmtree(os.path.join(target_dir(), "criterion"), ignore_errors=True)
    crit, thr, loads = {}, {}, []
    for i in range(runs):
        loads.append(open("/proc/loadavg").read().split()[0])
        print(f"run {i + 1}/{runs}, load {loads[-1]}", file=sys.stderr)
        sh(["cargo", "bench", "--bench", "core", "--bench", "layer"])
        for k, v in criterion_means().items():
            crit.setdefault(k, []).append(v)
        text = sh(["cargo", "bench", "--bench", "throughput"])
        sys.stderr.write(text)
        for k, v in parse_throughput(text).items():
            thr.setdefault(k, []).append(v)
    print(f"load average (1 min) before each run: {', '.join(loads)}\n")
    table(dict(sorted(crit.items())), fmt_ns)
    print()
    table(thr, fmt_num)


if __name__ == "__main__":
    main()
