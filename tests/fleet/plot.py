#!/usr/bin/python3
"""Plots the fleet simulation's per-minute CSV (fleet --csv) as a PNG: the request rate
Space sees over time, and the backlog.  Needs Debian's python3-matplotlib.

    plot.py fleet.csv fleet.png "title"
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    src, dst = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "telespool fleet simulation"
    with open(src) as f:
        rows = list(csv.DictReader(f))
    t = [int(r["minute"]) / 60 for r in rows]
    col = lambda k: [float(r[k]) for r in rows]  # noqa: E731
    steady, cap = float(rows[0]["steady_per_s"]), float(rows[0]["capacity_per_s"])
    out0, out1 = int(rows[0]["outage_from_min"]) / 60, int(rows[0]["outage_to_min"]) / 60

    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    a.axvspan(out0, out1, color="0.9", label="Space down")
    a.plot(t, col("seen_per_s"), color="C0", lw=1.2, label="requests Space sees")
    a.plot(t, col("throttled_per_s"), color="C3", lw=1, label="answered 429")
    a.axhline(steady, color="C2", ls="--", lw=1, label=f"steady state ({steady:.0f}/s)")
    a.axhline(2 * steady, color="C1", ls=":", lw=1, label="2 x steady")
    a.axhline(cap, color="k", ls="-.", lw=0.8, label=f"Space capacity ({cap:.0f}/s)")
    a.set_ylabel("requests / s (1-min bins)")
    a.legend(loc="upper right", fontsize=8)
    a.set_title(title, fontsize=10)
    b.axvspan(out0, out1, color="0.9")
    b.plot(t, [x / 1000 for x in col("backlog")], color="C4", lw=1.2,
           label="events waiting (thousands)")
    b2 = b.twinx()
    b2.plot(t, col("behind"), color="C5", lw=1, ls="--",
            label="instances holding an event older than one interval")
    b.set_ylabel("backlog (thousands of events)")
    b2.set_ylabel("instances behind")
    b.set_xlabel("hours")
    h1, l1 = b.get_legend_handles_labels()
    h2, l2 = b2.get_legend_handles_labels()
    b.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(dst, dpi=90)


if __name__ == "__main__":
    main()
