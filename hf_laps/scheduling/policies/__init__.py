"""Scheduling policies: one module per policy, all built on `base.BasePolicy`, found by name in
`hf_laps.scheduling.registry`."""
