"""Batched-rounds benchmark: tokens/s and mean latency at B = 1, 2, 4, 8 per scheduling policy,
next to transformers' padded batched `generate` and its continuous batching, on the same
requests; then mean latency under Poisson arrivals at B = 1 and at the candidate default B.

    python -m benchmarks.batched                      # embedded SmolLM2-135M, CPU, natural workload
    python -m benchmarks.batched --limit 8 --sizes 1,4 --policies fcfs,laps-sd --max-new-tokens 32

Modules: `workload` (the requests and their recorded true lengths), `sides` (our loop and the two
transformers sides), `table` (the table, the scheduling gain, the default-B rule), `poisson`
(latency under load), `__main__` (the command).
"""
