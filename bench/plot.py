#!/usr/bin/env python3
"""Draws the `scale` scenario of bench/run.py results as PNG files for BENCHMARKS.md.

    bench/plot.py OUT_DIR RESULT.json [RESULT.json ...]

Each result file adds one line (or bar group) per engine, labelled with the commit (or
FIS_BENCH_LABEL) it measured: resident memory and push time against the pushed hashes stored,
lookup latency at 1M and 10M, lookup latency at a steady 500 requests/s when idle, while a
1M push runs, and after it, and the p50/p99 per half second through a 1M push and a rotation. Needs matplotlib: scripts/bench.sh installs it under
target/bench-tools/venv and runs this when its results hold the scale scenario.
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def runs(paths):
    for path in paths:
        with open(path) as file:
            result = json.load(file)
        for engine, scenarios in result["engines"].items():
            if "scale" in scenarios:
                label = f"{result['machine']['commit']} ({engine})"
                yield label, scenarios["scale"], result["machine"]


def main():
    out, paths = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    measured = list(runs(paths))
    if not measured:
        raise SystemExit("no `scale` results in these files")
    machine = measured[0][2]
    note = f"{machine['cpu']}, {machine['cores']} cores; openssl sha256 64 B: {machine['openssl_sha256_64B_kBps']:.0f} kB/s"

    figure, (memory, push) = plt.subplots(1, 2, figsize=(11, 4))
    for label, scale, _ in measured:
        growth = scale["growth"]
        millions = [point["pushed_hashes"] / 1e6 for point in growth]
        memory.plot(millions, [point["rss_mib"] for point in growth], marker="o", label=label)
        pushes = [(point["pushed_hashes"] / 1e6, point["push_s"]) for point in growth if point["push_s"] is not None]
        push.plot([p[0] for p in pushes], [p[1] for p in pushes], marker="o", label=label)
    memory.set(xlabel="pushed hashes stored (millions), plus 1M own 3PIDs", ylabel="resident memory (MiB)",
               title="Memory as pushed hashes grow")
    push.set(xlabel="pushed hashes stored after the push (millions)", ylabel="seconds",
             title="Time of each 1M push")
    for axis in (memory, push):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(note, fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(out, "scale-memory-and-push.png"), dpi=110)

    figure, (sizes, steady) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(measured)
    for index, (label, scale, _) in enumerate(measured):
        points = sorted(scale["lookups"].items(), key=lambda item: float(item[0].rstrip("M")))
        names = [f"{name} p50" for name, _ in points] + [f"{name} p99" for name, _ in points]
        values = [run["p50_ms"] for _, run in points] + [run["p99_ms"] for _, run in points]
        sizes.bar([x + index * width for x in range(len(names))], values, width, label=label)
        sizes.set_xticks([x + width * (len(measured) - 1) / 2 for x in range(len(names))], names)
        latency = scale["latency_at_500_rps"]
        phases = ["idle", "during_1m_push", "after_1m_push"]
        steady.bar([x + index * width for x in range(3)], [latency[phase]["p99_ms"] for phase in phases], width,
                   label=label)
        steady.set_xticks([x + width * (len(measured) - 1) / 2 for x in range(3)], ["idle", "during a 1M push", "after it"])
    sizes.set(ylabel="ms", title="Lookup latency at full load (64 connections)")
    steady.set(ylabel="p99 (ms)", title="Lookup p99 at 500 requests/s")
    for axis in (sizes, steady):
        axis.grid(alpha=0.3, axis="y")
        axis.legend(fontsize=8)
    figure.suptitle(note, fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(out, "scale-lookups.png"), dpi=110)

    timed = [(label, scale) for label, scale, _ in measured if "series" in scale["latency_at_500_rps"]["during_1m_push"]]
    if timed:
        figure, axes = plt.subplots(len(timed), 2, figsize=(11, 3.2 * len(timed)), squeeze=False)
        for row, (label, scale) in enumerate(timed):
            for axis, run, interval, what in (
                (axes[row][0], scale["latency_at_500_rps"]["during_1m_push"], "push_interval_s", "a 1M push"),
                (axes[row][1], scale.get("during_rotation"), "rotation_interval_s", "a rotation"),
            ):
                if not run:
                    continue
                series = run["series"]
                axis.plot([point[0] for point in series], [point[2] for point in series], label="p99")
                axis.plot([point[0] for point in series], [point[1] for point in series], label="p50")
                axis.axvspan(*run[interval], alpha=0.15, color="tab:red", label=f"{what} (until it answers)")
                if "followed_at_s" in run:
                    axis.axvline(run["followed_at_s"], color="tab:green", linestyle="--",
                                 label="the instance answers with the new pepper")
                axis.set(xlabel="seconds", ylabel="ms, per half second", title=f"Lookups at 500/s during {what}: {label}")
                axis.grid(alpha=0.3)
                axis.legend(fontsize=8)
        figure.suptitle(note, fontsize=8)
        figure.tight_layout()
        figure.savefig(os.path.join(out, "scale-latency-over-time.png"), dpi=110)


if __name__ == "__main__":
    main()
