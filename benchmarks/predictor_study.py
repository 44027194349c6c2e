"""Held-out quality of the length predictors on a recorded workload (k-fold, seeded).

    python benchmarks/predictor_study.py benchmarks/data/natural.features.jsonl \\
        [--layers benchmarks/data/natural.layers.jsonl] [--folds 5] [--seed 0]

The input is what benchmarks/record_features.py writes (a timing log whose records carry
prompt, has_stop, is_chat and a "features" blob). Requests are shuffled with random.Random(seed)
and cut into k folds; each predictor is trained on k-1 folds (in file order, as `--history`
would) and predicts the held-out fold without learning from it. Reported over all held-out
predictions pooled: Spearman rank correlation with the true length, MAPE (%) and the median
|log(predicted / true)|. With --layers it also scores the hidden predictor on every single
layer and on each layer + the final one (the study behind hf_laps.engine.features' layer choice). When ids
carry a part prefix ("qa-", "code-", ...) it also gives the Spearman within each part.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import warnings
from dataclasses import replace
from pathlib import Path

from hf_laps.scheduling.predictors.feature_codec import decode_features
from hf_laps.scheduling.predictors.hidden import HiddenStatePredictor
from hf_laps.scheduling.predictors.learned import LearnedPredictor
from hf_laps.scheduling.predictors.base import mape
from hf_laps.scheduling.types import RequestSpec
from hf_laps.stats import percentile


def load(path: Path) -> list[tuple[RequestSpec, int]]:
    examples = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            r = json.loads(line)
            spec = RequestSpec(r["custom_id"], 0.0, r["prompt_tokens"], r["max_new_tokens"],
                               prompt=r.get("prompt"), features=decode_features(r.get("features")),
                               has_stop=r.get("has_stop", False), is_chat=r.get("is_chat", False))
            examples.append((spec, r["output_tokens"]))
    return examples


def load_layers(path: Path) -> dict[str, list[tuple[float, ...]]]:
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return {r["custom_id"]: [decode_features(b) for b in r["layers"]] for r in rows}


def ranks(values: list[float]) -> list[float]:
    """Ranks 1..n, ties get their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else math.nan


def cross_validate(examples, make, folds: int, seed: int, part: str | None = None
                   ) -> tuple[list[float], list[float]]:
    """(predictions, truths) over every held-out request (whose id starts with `part`, if set)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    predictions, truths = [], []
    for fold in range(folds):
        test = set(order[fold::folds])
        predictor = make()
        predictor.fit(e for i, e in enumerate(examples) if i not in test)
        for i in sorted(test):
            spec, truth = examples[i]
            if part is not None and not spec.request_id.startswith(part + "-"):
                continue
            predictions.append(predictor.predict(spec))
            truths.append(float(truth))
    return predictions, truths


def scores(predictions: list[float], truths: list[float]) -> str:
    log_errors = [abs(math.log(p / t)) for p, t in zip(predictions, truths)]
    return (f"{spearman(predictions, truths):.2f} | {mape(predictions, truths):.0f} % | "
            f"{percentile(log_errors, 50):.2f}")


def with_features(examples, table, pick):
    return [(replace(spec, features=pick(table[spec.request_id])), truth) for spec, truth in examples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path)
    parser.add_argument("--layers", type=Path, default=None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ridge", type=float, default=None, help="ridge of the hidden predictor")
    args = parser.parse_args()
    warnings.simplefilter("ignore")   # the layer study mixes blobs of several "models" on purpose
    examples = load(args.records)
    options = {} if args.ridge is None else {"ridge": args.ridge}
    without = [(replace(s, features=None), t) for s, t in examples]
    rows = [
        ("learned (hashed words + log prompt/cap)", lambda: LearnedPredictor(), examples),
        ("cheap features only", lambda: HiddenStatePredictor(**options), without),
        ("hidden (cheap + middle & final layer)", lambda: HiddenStatePredictor(**options), examples),
    ]
    print(f"{len(examples)} requests, {args.folds}-fold CV, seed {args.seed}\n")
    print("| predictor | Spearman | MAPE | median abs log error |\n|---|---|---|---|")
    for label, make, data in rows:
        print(f"| {label} | {scores(*cross_validate(data, make, args.folds, args.seed))} |")
    parts = sorted({spec.request_id.split("-")[0] for spec, _ in examples})
    if len(parts) > 1:
        print("\nSpearman within each part (same held-out predictions):\n")
        print("| predictor | " + " | ".join(parts) + " |")
        print("|---" * (len(parts) + 1) + "|")
        for label, make, data in rows:
            cells = [spearman(*cross_validate(data, make, args.folds, args.seed, part)) for part in parts]
            print(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    if args.layers is None:
        return
    table = load_layers(args.layers)
    print("\n| hidden_states index | that layer | that layer + final |\n|---|---|---|")
    for index in range(len(next(iter(table.values())))):
        alone = with_features(examples, table, lambda layers: layers[index])
        pair = with_features(examples, table, lambda layers: layers[index] + layers[-1])
        a = cross_validate(alone, lambda: HiddenStatePredictor(**options), args.folds, args.seed)
        b = cross_validate(pair, lambda: HiddenStatePredictor(**options), args.folds, args.seed)
        print(f"| {index} | {spearman(*a):.2f} | {spearman(*b):.2f} |")


if __name__ == "__main__":
    main()
