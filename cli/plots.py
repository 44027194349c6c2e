"""Plots of timing logs: latency CDFs, per-request timelines, and an occupancy view for big jobs.

Used by `hf-laps report` and `hf-laps bench --plot`; records are timing-log dicts
(`TimingRecord.to_json()`).
"""
from __future__ import annotations

import click


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency; guard broken installs
        raise click.ClickException("plots need matplotlib: pip install matplotlib") from exc
    return plt


def _cdf(ax, label: str, latencies: list[float], style: str = "-", color=None) -> None:
    values = sorted(latencies)
    n = len(values)
    if n:
        ax.step(values, [(i + 1) / n for i in range(n)], style, where="post", label=label, color=color)


def plot_cdfs(curves: dict[str, list[float]], path: str, title: str = "latency CDF") -> None:
    """One figure: the CDF of each labelled list of latencies (labels ending in '(replay)' dashed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {}  # one colour per policy: "laps-sd (real)" solid, "laps-sd (replay)" dashed
    for label, latencies in curves.items():
        key = label.rsplit(" (", 1)[0]
        colors.setdefault(key, f"C{len(colors) % 10}")
        _cdf(ax, label, latencies, "--" if label.endswith("(replay)") else "-", colors[key])
    ax.set_xlabel("latency (s)")
    ax.set_ylabel("share of requests")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


TIMELINE_ROWS = 40  # rows that stay legible in a 3-inch panel with custom_id labels


def _timeline(ax, label: str, records: list[dict]) -> None:
    if len(records) > TIMELINE_ROWS:
        _occupancy(ax, label, records)
        return
    rows = sorted(records, key=lambda r: (r.get("arrival", 0.0), r.get("start") or 0.0))
    for y, r in enumerate(rows):
        arrival, start, finish = r.get("arrival", 0.0), r.get("start") or r["finish"], r["finish"]
        ax.plot([arrival, start], [y, y], color="0.75", linewidth=1)
        color = "tab:red" if r.get("preemptions") else "tab:blue"
        ax.plot([start, finish], [y, y], color=color, linewidth=4, solid_capstyle="butt")
        if r.get("first_token") is not None:
            ax.plot([r["first_token"]], [y], "|", color="black", markersize=6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([str(r.get("custom_id", "?")) for r in rows], fontsize=6)
    ax.invert_yaxis()  # first arrival on top
    mark_runs(ax, records)
    ax.set_title(f"{label}: blue ran without preemption, red was preempted", fontsize=9)
    ax.set_xlabel("seconds since job start")
    ax.set_ylabel("custom_id (by arrival)")


def run_starts(records: list[dict]) -> list[float]:
    """Where each run after the first begins on the placed axis (its first arrival): a resumed
    job's runs follow one another (hf_laps.runs)."""
    firsts: dict = {}
    for r in records:
        epoch, arrival = r.get("run_epoch"), float(r.get("arrival", 0.0))
        firsts[epoch] = min(firsts.get(epoch, arrival), arrival)
    return sorted(firsts.values())[1:]


def mark_runs(ax, records: list[dict]) -> None:
    for x in run_starts(records):
        ax.axvline(x, color="0.3", linestyle="--", linewidth=1)
        ax.text(x, 1.0, " resumed", transform=ax.get_xaxis_transform(), fontsize=7, va="top")


def occupancy(records: list[dict]) -> tuple[list[float], list[int], list[int]]:
    """(times, waiting, in progress) after each event, events sorted by time.

    waiting: arrived, first round not yet run; in progress: first round run, not finished.
    """
    deltas: list[tuple[float, int, int]] = []
    for r in records:
        arrival, finish = float(r.get("arrival", 0.0)), float(r["finish"])
        start = float(r["start"]) if r.get("start") is not None else finish
        deltas += [(arrival, 1, 0), (start, -1, 1), (finish, 0, -1)]
    times, waiting, running = [], [], []
    w = p = 0
    for time, dw, dp in sorted(deltas):
        w, p = w + dw, p + dp
        times.append(time)
        waiting.append(w)
        running.append(p)
    return times, waiting, running


def _occupancy(ax, label: str, records: list[dict]) -> None:
    times, waiting, running = occupancy(records)
    ax.step(times, waiting, where="post", color="0.5", label="waiting (no round yet)")
    ax.step(times, running, where="post", color="tab:red", label="in progress (started, not finished)")
    mark_runs(ax, records)
    ax.set_title(f"{label}: {len(records)} requests", fontsize=9)
    ax.set_xlabel("seconds since job start")
    ax.set_ylabel("requests")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_report(logs: dict[str, list[dict]], path: str) -> None:
    """Latency CDF of every log plus one timeline panel per log."""
    plt = _pyplot()
    fig, axes = plt.subplots(1 + len(logs), 1, figsize=(8, 3.2 * (1 + len(logs))), squeeze=False)
    ax = axes[0][0]
    for label, records in logs.items():
        _cdf(ax, label, [r["latency"] for r in records if r.get("latency") is not None])
    ax.set_xlabel("latency (s)")
    ax.set_ylabel("share of requests")
    ax.set_title("latency CDF")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for (label, records), row in zip(logs.items(), axes[1:]):
        _timeline(row[0], label, records)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
