"""Crash and resume: kill `hf-laps run` at seeded random points, resume, and check exactly once.

Each scenario starts `hf-laps run` as a subprocess on a few dozen requests (tiny random Llama, CPU,
greedy), interrupts it with SIGKILL, SIGINT or SIGTERM at a seeded random point, restarts it with
`--resume` (and interrupts that run too, in a chain), then lets a last `--resume` finish. Checked:

- after every interruption: every complete line of every output file is a JSON record, only a
  SIGKILL may leave a torn (newline-less) last line, no key is in the results twice, and every
  record equals the one of an uninterrupted reference run;
- SIGINT / SIGTERM are graceful: exit code 130, no torn line at all;
- at the end: every key (custom_id, or `line:<n>` for an id-less bad line) exactly once, each record
  identical to the reference (texts, finish reasons, usage, error records), the same exit code,
  a summary counting each request once, and no file in the job folder but the configured three.

Some SIGKILL points also append a torn fragment of a record to the results and the timing log, as
a power cut in the middle of a write would; `--resume` must cut it and rerun that request.

Every scenario runs at one request per round and at batched rounds (--max-batch-size 4, and the
default "auto", where the batch planner decides every round), each
checked against the same uninterrupted B = 1 reference: interruptions, resumes and batch
composition change nothing in any record.

Size: 5 interruption points per signal at B = 1 and 2 at B = 4 by default (CI); HF_LAPS_NIGHTLY=1
runs 25 per signal at both.
"""
from __future__ import annotations

import functools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

NIGHTLY = os.environ.get("HF_LAPS_NIGHTLY") == "1"
BATCH_SIZES = (1, 4, "auto")
POINTS_PER_SIGNAL = {1: 25, 4: 25, "auto": 25} if NIGHTLY else {1: 5, 4: 2, "auto": 2}  # by --max-batch-size
KILLS_PER_CHAIN = 5  # interruptions of one job (each resumed) before a last --resume finishes it
RUN_TIMEOUT = 180  # seconds; a run of the whole job takes ~5 s on 2 cores

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and POSIX signals")

# custom_ids that would do harm if they ever became paths or shell words
NASTY_IDS = ["../../escape", "a/b\\c", "$(touch PWNED)", "`touch PWNED2`;|&", "ünï 🚀 sp ace", "*", "line:x"]


def make_input(path: Path, n: int = 32, seed: int = 0) -> None:
    """n valid requests (completions and chat, 4..28 new tokens) plus four bad lines."""
    rng = random.Random(seed)
    words = "the cat sat on a mat and ran to the big red house by the sea while it was raining".split()
    lines = []
    for i in range(n):
        custom_id = NASTY_IDS[i] if i < len(NASTY_IDS) else f"r{i:02d}"
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 24)))
        budget = rng.randint(4, 28)
        if i % 4 == 3:
            lines.append({"custom_id": custom_id, "messages": [{"role": "user", "content": text}], "max_tokens": budget})
        else:
            lines.append({"custom_id": custom_id, "prompt": text, "max_tokens": budget})
    raw = [json.dumps(line, ensure_ascii=False) for line in lines]
    raw.insert(5, "{not json")  # id-less error record, keyed line:6
    raw.insert(11, json.dumps({"custom_id": "r09", "prompt": "dup"}))  # duplicate: keyed by its line
    raw.insert(17, json.dumps({"custom_id": "bad-max", "prompt": "x", "max_tokens": -3}))  # error with an id
    raw.append(json.dumps({"custom_id": "no-prompt", "max_tokens": 3}))
    path.write_text("\n".join(raw) + "\n", encoding="utf-8")


def command(model_dir: Path, resume: bool, batch: int | str = 1) -> list[str]:
    cmd = [sys.executable, "-m", "hf_laps.cli.main", "run", "input.jsonl", "-o", "results.jsonl",
           "--model", str(model_dir), "--no-progress", "--max-batch-size", str(batch)]
    return cmd + ["--resume"] if resume else cmd


def env() -> dict:
    # the installed hf-laps runs (conftest sets PYTHONSAFEPATH, so the job folder is not on sys.path)
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


OUTPUTS = ("results.jsonl", "results.timing.jsonl", "results.summary.json")


# ---- reading the outputs ---------------------------------------------------------------------


def read_lines(path: Path, torn_ok: bool) -> list[dict]:
    """Every complete line as JSON; a newline-less last line is allowed only when torn_ok."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends on a newline
    assert torn_ok or tail == b"", f"{path.name}: torn last line {tail[:80]!r}"
    records = []
    for number, line in enumerate(lines, 1):
        record = json.loads(line)  # raises on a partial or garbage line
        assert isinstance(record, dict), f"{path.name}:{number} is not an object"
        records.append(record)
    return records


def key(record: dict) -> str:
    return record["custom_id"] if record.get("custom_id") is not None else f"line:{record['error']['line']}"


def stable(record: dict) -> dict:
    """A record without what legitimately differs between runs (creation time, latency)."""
    record = json.loads(json.dumps(record))
    body = (record.get("response") or {}).get("body") or {}
    body.pop("created", None)
    body.pop("hf_laps", None)
    return record


def count_newlines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return handle.read().count(b"\n")
    except FileNotFoundError:
        return 0


def holds_lock(pid: int, path: Path) -> bool:
    """True while process `pid` holds the results file's flock, i.e. the job has opened its
    outputs (read from /proc/locks, so the test never touches the lock itself)."""
    try:
        inode = path.stat().st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return False
    return any(f" {pid} " in line and line.split()[5].endswith(f":{inode}") for line in table.splitlines() if "FLOCK" in line)


def catches_sigterm(pid: int) -> bool:
    """True once the process has its own SIGTERM handler (the job runner installs it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    match = re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M)
    return bool(match) and bool(int(match.group(1), 16) >> (signal.SIGTERM - 1) & 1)


@functools.lru_cache(maxsize=None)
def flocks_visible() -> bool:
    """Whether /proc/locks lists flocks here (some sandboxes do not)."""
    import fcntl
    import tempfile

    with tempfile.NamedTemporaryFile() as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        return holds_lock(os.getpid(), Path(handle.name))


def job_started(pid: int, results: Path) -> bool:
    """The job has opened its outputs: from then on SIGINT / SIGTERM must be graceful."""
    return holds_lock(pid, results) if flocks_visible() else catches_sigterm(pid)


# ---- running ---------------------------------------------------------------------------------


def run_to_end(job: Path, model_dir: Path, resume: bool, batch: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(command(model_dir, resume, batch), cwd=job, env=env(), capture_output=True, text=True, timeout=RUN_TIMEOUT)


def run_and_interrupt(job: Path, logs: Path, model_dir: Path, resume: bool, sig: int, min_lines: int, delay: float,
                      wait_started: bool, twice: bool = False, batch: int = 1):
    """Start a run; once `min_lines` result lines exist (and, if asked, the job has opened its
    outputs), wait `delay` seconds and send `sig` (`twice`: again 20 ms later, an impatient
    Ctrl-C Ctrl-C). Returns (exit code, whether it was sent)."""
    with open(logs / "stdout", "ab") as out, open(logs / "stderr", "ab") as err:
        proc = subprocess.Popen(command(model_dir, resume, batch), cwd=job, env=env(), stdout=out, stderr=err)
        deadline = time.monotonic() + RUN_TIMEOUT
        reached, sent = None, False
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                ready = (not wait_started or job_started(proc.pid, job / "results.jsonl")) and count_newlines(job / "results.jsonl") >= min_lines
                if ready and reached is None:
                    reached = time.monotonic()
                if reached is not None and time.monotonic() - reached >= delay:
                    proc.send_signal(sig)
                    sent = True
                    if twice:
                        time.sleep(0.02)
                        if proc.poll() is None:
                            proc.send_signal(sig)
                    break
                time.sleep(0.005)
            return proc.wait(timeout=RUN_TIMEOUT), sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def pick_point(rng: random.Random, done: int, total: int, graceful: bool) -> tuple[int, float]:
    """(result lines to wait for, then seconds to wait): early points hit start-up (SIGKILL
    only: the others wait until the job has opened its outputs) and model loading, the others a
    random moment between two results."""
    if rng.random() < 0.3:
        return done, rng.uniform(0.0, 1.5 if graceful else 2.0)
    return done + rng.randint(0, max(0, total - done - 6)), rng.uniform(0.0, 0.3)


def tear(path: Path, record: dict, rng: random.Random) -> None:
    """Append a prefix of `record`'s line without its newline (a write cut by a power loss)."""
    line = json.dumps(record, ensure_ascii=False).encode()
    with open(path, "ab") as handle:
        handle.write(line[: rng.randint(1, len(line) - 1)])


# ---- the reference run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    """An uninterrupted run: (exit code, records by key without run-dependent fields, folder)."""
    job = tmp_path_factory.mktemp("reference")
    make_input(job / "input.jsonl")
    done = run_to_end(job, tiny_model_dir, resume=False)
    assert done.returncode == 3, done.stderr[-2000:]  # the input has bad lines
    records = read_lines(job / "results.jsonl", torn_ok=False)
    by_key = {key(r): stable(r) for r in records}
    assert len(by_key) == len(records) == 32 + 4
    assert sum(r["error"] is None for r in records) == 32
    timing = read_lines(job / "results.timing.jsonl", torn_ok=False)
    assert sorted(t["custom_id"] for t in timing) == sorted(k for k, r in by_key.items() if r["error"] is None)
    return done.returncode, by_key, job


# ---- the checks ------------------------------------------------------------------------------


def check_partial(job: Path, reference_records: dict, torn_ok: bool) -> int:
    """Invariants that hold after any interruption; returns the number of complete results."""
    results = read_lines(job / "results.jsonl", torn_ok)
    keys = [key(r) for r in results]
    assert len(keys) == len(set(keys)), f"duplicated keys {[k for k, n in Counter(keys).items() if n > 1]}"
    for record in results:
        assert stable(record) == reference_records[key(record)]
    read_lines(job / "results.timing.jsonl", torn_ok)
    if (job / "results.summary.json").exists():
        json.loads((job / "results.summary.json").read_text())  # written atomically
    return len(results)


def check_final(job: Path, reference_records: dict, done: subprocess.CompletedProcess, exit_code: int, kills: int) -> None:
    assert done.returncode == exit_code, done.stderr[-2000:]
    results = read_lines(job / "results.jsonl", torn_ok=False)
    keys = Counter(key(r) for r in results)
    assert [k for k, n in keys.items() if n > 1] == []
    assert set(keys) == set(reference_records)
    for record in results:
        assert stable(record) == reference_records[key(record)], key(record)
    successes = {k for k, r in reference_records.items() if r["error"] is None}
    timing = read_lines(job / "results.timing.jsonl", torn_ok=False)
    timing_ids = Counter(t["custom_id"] for t in timing)
    assert set(timing_ids) == successes
    # a request is logged twice only when a SIGKILL fell between its timing line and its result
    assert sum(timing_ids.values()) - len(timing_ids) <= kills
    summary = json.loads((job / "results.summary.json").read_text())
    assert summary["requests"] == len(successes)
    # the CLI's own tally of the last run adds up to the whole job
    tally = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) already done", done.stdout)
    assert tally, done.stdout[-2000:]
    succeeded, failed, skipped = map(int, tally.groups())
    errors = sum(r["error"] is not None for r in results)
    assert failed == errors, done.stdout[-500:]
    assert succeeded + skipped == len(successes)  # every valid line of this input succeeds
    leftovers = sorted(p.name for p in job.iterdir())
    assert leftovers == sorted(["input.jsonl", *OUTPUTS]), leftovers


# ---- the scenarios ---------------------------------------------------------------------------

SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("name", list(SIGNALS))
def test_interrupt_and_resume(name, batch, reference, tiny_model_dir, tmp_path, record_property):
    """Interrupt POINTS_PER_SIGNAL times (chains of KILLS_PER_CHAIN, each resumed), then finish."""
    points = POINTS_PER_SIGNAL[batch]
    sig = SIGNALS[name]
    graceful = sig != signal.SIGKILL
    exit_code, reference_records, _ = reference
    total = len(reference_records)
    rng = random.Random(f"hf-laps-crash-{name}" + (f"-b{batch}" if batch != 1 else ""))
    delivered, missed, torn, chains, doubled = 0, 0, 0, 0, 0
    while delivered < points:
        assert chains < points + 3, f"only {delivered} of {points} points reached"
        chains += 1
        job, logs = tmp_path / f"job{chains}", tmp_path / f"logs{chains}"
        job.mkdir(), logs.mkdir()
        make_input(job / "input.jsonl")
        kills = 0
        for attempt in range(KILLS_PER_CHAIN):
            if delivered >= points:
                break
            done = check_partial(job, reference_records, torn_ok=not graceful)
            min_lines, delay = pick_point(rng, done, total, graceful)
            twice = sig == signal.SIGINT and rng.random() < 0.4  # the second Ctrl-C aborts at once
            code, sent = run_and_interrupt(job, logs, tiny_model_dir, attempt > 0, sig, min_lines, delay, graceful, twice,
                                           batch)
            finished = count_newlines(job / "results.jsonl") == total and (job / "results.summary.json").exists()
            # the run finished before the signal took effect (a signal after the job has returned,
            # while the process exits, may still end it, but its files are complete)
            if not sent or (graceful and finished and code in (exit_code, -sig, 1)):
                missed += 1
                break
            delivered += 1
            kills += 1
            doubled += twice
            if graceful:
                # a second Ctrl-C may also end the process by SIGINT, which shells report as 130 too
                allowed = (130, -signal.SIGINT) if twice else (130,)
                assert code in allowed, f"{name}{' x2' * twice} at {min_lines} lines + {delay:.2f} s: exit {code}\n" + (logs / "stderr").read_text()[-3000:]
                check_partial(job, reference_records, torn_ok=False)
                continue
            assert code == -signal.SIGKILL
            done = check_partial(job, reference_records, torn_ok=True)
            if rng.random() < 0.5 and done < total:  # simulate a power cut in the middle of a write
                have = {key(r) for r in read_lines(job / "results.jsonl", torn_ok=True)}
                record = next(r for k, r in reference_records.items() if k not in have)
                tear(job / "results.jsonl", record, rng)
                tear(job / "results.timing.jsonl", {"custom_id": key(record), "finish": 1.0}, rng)
                torn += 1
        final = run_to_end(job, tiny_model_dir, resume=True, batch=batch)
        check_final(job, reference_records, final, exit_code, kills)
    print(f"{name} at B = {batch}: {delivered} interruption points in {chains} chains ({doubled} sent twice), "
          f"{missed} runs finished first, {torn} torn tails injected")
    record_property("interruption_points", delivered)


def test_resume_of_a_finished_job_changes_nothing(reference, tiny_model_dir, tmp_path):
    """--resume on a complete results file reruns nothing and rewrites nothing but the summary."""
    exit_code, reference_records, reference_job = reference
    for name in ("input.jsonl", *OUTPUTS):
        shutil.copy(reference_job / name, tmp_path / name)
    before = {name: (tmp_path / name).read_bytes() for name in OUTPUTS[:2]}
    again = run_to_end(tmp_path, tiny_model_dir, resume=True)
    check_final(tmp_path, reference_records, again, exit_code, kills=0)
    assert {name: (tmp_path / name).read_bytes() for name in OUTPUTS[:2]} == before
    assert re.search(r"\b0 succeeded, 4 failed, 32 already done", again.stdout), again.stdout[-500:]
