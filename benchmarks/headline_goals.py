"""The project's targets for the headline table (`hf-laps bench --replay`), checked per policy x
predictor on its summary (hf_laps.replay.headline_table.Summary). A policy meets a goal when it
holds on every cell of the recording:

    poisson  mean <= 0.85 x best baseline in every Poisson cell
    burst    mean <= 1.00 x best baseline in every burst cell
    srpt     mean / srpt-oracle <= 1.15 on average (geometric mean over all cells)
    p99      p99 <= 1.5 x fcfs's p99 in every cell (nobody starves)

    python -m benchmarks.headline_goals headline.json     # the JSON of `hf-laps bench --replay --json`
"""
from __future__ import annotations

import json
import math
import sys

GOALS = {"poisson": 0.85, "burst": 1.00, "srpt": 1.15, "p99": 1.5}
FIELDS = {"poisson": "poisson_worst", "burst": "burst_worst", "srpt": "srpt_geomean", "p99": "p99_worst"}


def goals_met(summary) -> dict[str, bool]:
    """goal -> met, for a Summary or its JSON dict (a recording without Poisson or burst cells
    meets that goal)."""
    get = summary.get if isinstance(summary, dict) else lambda name: getattr(summary, name)
    met = {}
    for goal, limit in GOALS.items():
        value = get(FIELDS[goal])
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        met[goal] = (missing and goal in ("poisson", "burst")) or (not missing and value <= limit)
    return met


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    print("goals: " + ", ".join(f"{goal} <= {limit}" for goal, limit in GOALS.items()))
    for s in data["summary"]:
        met = [goal for goal, ok in goals_met(s).items() if ok]
        print(f"{s['recording']:<12}{s['predictor']:<10}{s['policy']:<13}{' '.join(met) or '-'}")


if __name__ == "__main__":
    main(sys.argv[1])
