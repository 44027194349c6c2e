"""benchmarks/gittins_study.py: the leave-fold-out history never lets a request predict itself,
the log's flags reach the predictor, and the study runs end to end on a small recording."""
import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

from hf_laps.scheduling.predictors.feature_codec import encode_features
from hf_laps.scheduling.types import RequestSpec

pytestmark = pytest.mark.torchfree

STUDY = Path(__file__).resolve().parents[1] / "benchmarks" / "gittins_study.py"
MODEL = "TinyModel:h64:layer1/2:d4:seed0:w00000000"


def load_study():
    spec = importlib.util.spec_from_file_location("gittins_study", STUDY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_recording(path, count=20):
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(count):
            code = i % 2 == 0
            out = rng.choice([2, 60]) if code else 32
            rounds = [[2, 1, 0.5, 0.0]] + [[2, 1, 0.2, 0.0]] * ((out - 2) // 2)
            handle.write(json.dumps({
                "custom_id": f"{'code' if code else 'chat'}-{i}", "arrival": 0.0,
                "prompt_tokens": 20, "max_new_tokens": 128 if code else 32, "output_tokens": out,
                "has_stop": code, "is_chat": not code, "rounds": rounds,
                "features": encode_features([rng.gauss(0, 1) for _ in range(4)], MODEL)}) + "\n")


def test_leave_fold_out_never_fits_a_request_into_its_own_model(tmp_path):
    study = load_study()
    log = tmp_path / "rec.timing.jsonl"
    write_recording(log)
    recording = study.Recording.load(str(log), history=True)
    folded = recording.folded
    assert set(folded.fold_of) == {t.custom_id for t in recording.traces}
    for fold, model in enumerate(folded.models):
        held_out = sum(1 for f in folded.fold_of.values() if f == fold)
        assert held_out > 0 and model.cheap.count == len(recording.traces) - held_out
    assert len(recording.calibration_history) == len(recording.traces)


def test_the_predictor_sees_the_logs_flags(tmp_path):
    study = load_study()
    log = tmp_path / "rec.timing.jsonl"
    write_recording(log)
    recording = study.Recording.load(str(log), history=False)
    seen = []

    class Spy(study.LengthPredictor):
        def predict(self, request):
            seen.append((request.has_stop, request.is_chat))
            return 1.0

    wrapped = study.WithLogFlags(Spy(), recording.flags)
    wrapped.predict(RequestSpec("code-0", 0.0, 20, 128))
    wrapped.predict(RequestSpec("chat-1", 0.0, 20, 32))
    assert seen == [(True, False), (False, True)]


def test_the_study_runs_and_prints_the_goal_check(tmp_path, capsys):
    study = load_study()
    log = tmp_path / "rec.timing.jsonl"
    write_recording(log, count=12)
    study.main([str(log), "--predictors", "hidden", "--history"])
    out = capsys.readouterr().out
    assert "poisson 0.9" in out and "hidden+history" in out
    assert "goal check, gittins" in out
