"""Safety: no remote code unless asked, no unpickling of state files, user data never becomes a
path or a command.

- trust_remote_code: every from_pretrained call gets an explicit False unless --trust-remote-code
  is passed (transformers would otherwise prompt, or with True run the repo's code); a model folder
  whose config points at its own Python file is refused, and the file never runs, unless the flag
  is given (then it does: the positive control).
- State files are safetensors + JSON: a pickle payload (plain or torch.save) is rejected with a
  ValueError and never runs; a real state loads with pickle and torch.load disabled.
- custom_ids full of path separators and shell syntax: the job writes exactly its three
  configured files, starts no process, and every id comes back verbatim; a static scan of the
  package finds no subprocess, os.system, eval/exec, pickle or torch.load.
"""
from __future__ import annotations

import ast
import builtins
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hf_laps.cli.run import run

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = [REPO / "hf_laps", REPO / "jobs", REPO / "cli"]


def write_input(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(json.dumps({"custom_id": i, "prompt": f"one two {n}", "max_tokens": 3}) + "\n" for n, i in enumerate(ids)),
                    encoding="utf-8")
    return path


# ---- trust_remote_code -----------------------------------------------------------------------


@pytest.fixture
def from_pretrained_calls(monkeypatch):
    """Record the kwargs of every transformers from_pretrained call (then load as usual)."""
    import transformers

    calls = []
    for name in ("AutoModelForCausalLM", "AutoTokenizer", "AutoConfig"):
        cls = getattr(transformers, name)
        real = cls.from_pretrained

        def recorder(*args, _real=real, _name=name, **kwargs):
            calls.append((_name, kwargs))
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", staticmethod(recorder))
    return calls


@pytest.mark.parametrize("flag", [False, True])
def test_trust_remote_code_reaches_from_pretrained_only_with_the_flag(flag, from_pretrained_calls, tiny_model_dir, tmp_path):
    write_input(tmp_path / "in.jsonl", ["a"])
    args = [str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--model", str(tiny_model_dir),
            "--assistant", str(tiny_model_dir), "--no-progress"] + (["--trust-remote-code"] if flag else [])
    result = CliRunner().invoke(run, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    loaded = [name for name, _ in from_pretrained_calls]
    assert loaded.count("AutoModelForCausalLM") == 2 and "AutoTokenizer" in loaded  # target, draft, tokenizer
    for name, kwargs in from_pretrained_calls:
        # explicit, never left to transformers' default (None: an interactive prompt)
        assert kwargs.get("trust_remote_code", "missing") is flag, (name, kwargs)


def evil_model_dir(path: Path, marker: Path) -> Path:
    """A model folder whose config asks transformers to import its own code (which would write
    `marker`)."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({
        "model_type": "hf_laps_evil",
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"},
    }))
    (path / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'hf_laps_evil'\n"
        "EvilModel = None\n"
    )
    return path


def test_repo_code_never_runs_without_the_flag(tmp_path):
    marker = tmp_path / "REMOTE_CODE_RAN"
    model = evil_model_dir(tmp_path / "evil-model", marker)
    write_input(tmp_path / "in.jsonl", ["a"])
    result = CliRunner().invoke(run, [str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--model", str(model), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "contains custom code" in result.output
    assert not marker.exists()


def test_repo_code_runs_with_the_flag_positive_control(tmp_path):
    """The same folder with --trust-remote-code does import evil.py (so the test above means
    something). In a subprocess, with its own modules cache, to keep this process clean."""
    marker = tmp_path / "REMOTE_CODE_RAN"
    model = evil_model_dir(tmp_path / "evil-model", marker)
    write_input(tmp_path / "in.jsonl", ["a"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    subprocess.run([sys.executable, "-m", "hf_laps.cli.main", "run", "in.jsonl", "-o", "out.jsonl", "--model", str(model),
                    "--no-progress", "--trust-remote-code"], cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert marker.exists()


def test_every_from_pretrained_call_passes_trust_remote_code_explicitly():
    """Statically: a from_pretrained call without trust_remote_code= would leave the decision to
    transformers' default."""
    missing = []
    for path, tree in package_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
                owner = node.func.value
                if isinstance(owner, ast.Name) and owner.id in ("LapsGenerator", "cls"):
                    continue  # our own wrapper: its default is False and it passes it on explicitly
                if not any(k.arg == "trust_remote_code" for k in node.keywords):
                    missing.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert missing == []


# ---- state files -----------------------------------------------------------------------------


class Payload:
    """Unpickling this creates `path` (a stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


@pytest.fixture(scope="module")
def engine():
    from hf_laps.engine.speculative import SpeculativeEngine
    from tiny_models import tiny_target

    return SpeculativeEngine(tiny_target())


@pytest.mark.parametrize("kind", ["pickle", "torch.save", "pickle-after-safetensors-header"])
def test_pickle_payload_in_a_state_file_is_rejected_and_never_runs(kind, engine, tmp_path):
    from hf_laps.engine.state import read_state_file

    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "state.safetensors"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"input_ids": Payload(marker)}))
    elif kind == "torch.save":
        torch.save({"input_ids": torch.zeros(1, 3), "meta": Payload(marker)}, path)
    else:  # a valid-looking header length, then a pickle
        body = pickle.dumps(Payload(marker))
        path.write_bytes(len(body).to_bytes(8, "little") + body)
    with pytest.raises(ValueError, match="not a hf-laps state file"):
        read_state_file(path)
    with pytest.raises(ValueError):
        engine.load_state(path)
    assert not marker.exists()


def test_state_round_trip_never_unpickles(engine, tmp_path, monkeypatch):
    state = engine.start([1, 5, 9, 5, 9, 5], max_new_tokens=8)
    engine.step(state)
    path = tmp_path / "state.safetensors"
    state.save(path)

    def refuse(*args, **kwargs):
        raise AssertionError("a state file load tried to unpickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    loaded = engine.load_state(path)
    assert loaded.output_ids == state.output_ids and loaded.kv_len == state.kv_len
    monkeypatch.undo()
    while not state.finished:
        engine.step(state)
    while not loaded.finished:
        engine.step(loaded)
    assert loaded.output_ids == state.output_ids


def test_state_metadata_is_json_not_code(engine, tmp_path):
    """Metadata that is not a JSON document, or of another format version, is refused."""
    from safetensors.torch import save_file

    from hf_laps.engine.state import read_state_file

    path = tmp_path / "bad.safetensors"
    save_file({"input_ids": torch.zeros(1, 2, dtype=torch.long)}, str(path), metadata={"hf_laps_state": json.dumps({"format_version": 99})})
    with pytest.raises(ValueError, match="unsupported state format"):
        read_state_file(path)
    save_file({"input_ids": torch.zeros(1, 2, dtype=torch.long)}, str(path), metadata={"other": "x"})
    with pytest.raises(ValueError, match="no hf_laps_state"):
        read_state_file(path)


# ---- custom_ids and model paths never become paths or commands -------------------------------

NASTY_IDS = [
    "../../../tmp/hf_laps_escape", "/etc/passwd", "a/b/c", "..\\..\\win", "C:\\x", "$(touch PWNED1)", "`touch PWNED2`",
    "; touch PWNED3", "| touch PWNED4", "&& touch PWNED5", "x > PWNED6", "'\"quotes\"'", "*", "~", "%s%n{0}", "-rf",
    "ünï 🚀", "x" * 512,
]


@pytest.fixture
def spawn_guard(monkeypatch):
    """Make starting any process fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to start a process: {args[:2]!r}")

    for module, name in ((subprocess, "Popen"), (os, "system"), (os, "popen"), (os, "posix_spawn"), (os, "posix_spawnp"),
                         (os, "fork"), (os, "execv"), (os, "execve"), (os, "execvp")):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, refuse)


def test_custom_ids_are_data_only(tiny_model_dir, tmp_path, monkeypatch, spawn_guard):
    from hf_laps.serving.generator import LapsGenerator
    from hf_laps.jobs.runner import JobConfig, run_job

    generator = LapsGenerator.from_pretrained(str(tiny_model_dir), progress=False)
    job = tmp_path / "job"
    job.mkdir()
    monkeypatch.chdir(job)
    write_input(job / "input.jsonl", NASTY_IDS)
    written = []
    real_os_open, real_open, real_replace = os.open, builtins.open, os.replace

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
            written.append(os.path.abspath(os.fspath(path)))
        return real_os_open(path, flags, *args, **kwargs)

    def py_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            written.append(os.path.abspath(os.fspath(file)))
        return real_open(file, mode, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        written.append(os.path.abspath(os.fspath(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", py_open)
    monkeypatch.setattr(io, "open", py_open)
    monkeypatch.setattr(os, "replace", replace)
    config = JobConfig(input="input.jsonl", results="results.jsonl", progress=False)
    outcome = run_job(config, generator=generator)
    monkeypatch.undo()
    assert outcome.exit_code == 0, outcome.message

    configured = {str(job / n) for n in ("results.jsonl", "results.timing.jsonl", "results.summary.json", "results.summary.json.tmp")}
    assert str(job / "results.jsonl") in written  # the recording works
    assert set(written) <= configured, set(written) - configured
    assert sorted(p.name for p in job.iterdir()) == ["input.jsonl", "results.jsonl", "results.summary.json", "results.timing.jsonl"]
    assert not any("PWNED" in p.name or "escape" in p.name for p in tmp_path.rglob("*"))
    assert not Path("/tmp/hf_laps_escape").exists()
    records = [json.loads(line) for line in (job / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["custom_id"] for r in records) == sorted(NASTY_IDS)  # verbatim, exactly once
    timing = [json.loads(line) for line in (job / "results.timing.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(t["custom_id"] for t in timing) == sorted(NASTY_IDS)


def test_model_path_with_shell_syntax_is_just_a_missing_model(tmp_path, monkeypatch, spawn_guard):
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "in.jsonl", ["a"])
    for model in ("$(touch PWNED)", "x; touch PWNED", "`touch PWNED`", "../../nope | touch PWNED"):
        result = CliRunner().invoke(run, ["in.jsonl", "-o", "out.jsonl", "--model", model, "--no-progress"])
        assert result.exit_code == 2, (model, result.output)
        assert "could not load" in result.output or "does not exist" in result.output  # path-like: preflight
    assert not list(tmp_path.rglob("PWNED*"))


# ---- static scan -----------------------------------------------------------------------------

FORBIDDEN_MODULES = {"subprocess", "pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "pty", "commands"}
FORBIDDEN_CALLS = {"eval", "exec", "os.system", "os.popen", "torch.load", "pickle.load", "pickle.loads", "os.startfile"}
FORBIDDEN_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn")
# file -> names it may use, each with the reason; empty today
# `hf-laps run --num-processes N` starts accelerate's launcher as a child process: an argument
# list (sys.executable -m accelerate.commands.launch ...), never a shell string.
ALLOWED: dict[str, set[str]] = {"cli/launch.py": {"subprocess", "subprocess.run", "subprocess.call", "subprocess.Popen"}}


def package_trees():
    for folder in PACKAGE_DIRS:
        for path in sorted(folder.rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def test_package_has_no_shell_exec_or_pickle():
    found = []
    for path, tree in package_trees():
        allowed = ALLOWED.get(str(path.relative_to(REPO)), set())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
                names = [node.module]
            elif isinstance(node, ast.Call):
                name = dotted(node.func)
                if name in FORBIDDEN_CALLS or name.startswith(FORBIDDEN_PREFIXES):
                    names = [name]
                if any(k.arg == "shell" for k in node.keywords):
                    names.append("shell=")
            found += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names if n not in allowed]
    assert found == []
