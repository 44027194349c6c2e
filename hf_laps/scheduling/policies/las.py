"""LAS: least attained service over the same K queues as LAPS-SD, never perceptible.

The ablation among the baselines (docs/design.md#baselines): LAPS-SD without the stability test,
predictor or T_rem, i.e. multi-level feedback queues demoting by attained seconds, FCFS inside a
queue, a running request kept until its threshold (docs/design.md#attained-seconds,
#queues-and-thresholds, #run-to-threshold).
"""
from __future__ import annotations

from dataclasses import replace

from hf_laps.scheduling.config import SchedulerConfig
from hf_laps.scheduling.policies.laps_sd import LapsSDPolicy


class LASPolicy(LapsSDPolicy):
    """LAPS-SD with `perceptible=False`; needs no predictor."""

    name = "las"

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        super().__init__(replace(config or SchedulerConfig(), perceptible=False), predictor=None)
