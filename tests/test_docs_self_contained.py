"""The repository explains itself: no comment or doc points to a file outside it, and every
`docs/design.md#anchor` that code or docs cite exists. Pure Python (no torch)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.torchfree

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "design.md"
TEXT_SUFFIXES = {".py", ".md", ".ini", ".cfg", ".toml", ".sh", ".txt", ".yml", ".yaml"}
SKIP_DIRS = {".git", ".tox", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis"}

# Design notes that live outside the repository, and the bare labels they used for decisions
# and pitfalls: a clone has neither, so a reader could not follow the reference.
OUTSIDE = re.compile(
    r"\.\./shared|shared/design|laps-sd-spec|[\w-]+-notes\.md|scheduling-beyond-laps"
    r"|\bspec D\d|\bDECISIONS?\b|\bD[1-7]\b|\(P\d{1,2}\)"
)
CITED = re.compile(r"design\.md#([a-z0-9][a-z0-9-]*)")
# laps_sd.py / las.py cite several anchors after one `docs/design.md`: "(#run-to-threshold)"
SHORT = re.compile(r"(?<![\w/#])#([a-z0-9]+(?:-[a-z0-9]+)+)\b")
ANCHOR = re.compile(r'<a id="([^"]+)"></a>')


def repo_text_files():
    for root, dirs, files in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO)
        # hidden folders (.git, .ci-venv, ...) and virtual environments hold other projects' text
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
                   and not (Path(root) / d / "pyvenv.cfg").exists()
                   and (rel_root / d) != Path("benchmarks", "data")]
        for name in files:
            path = Path(root) / name
            if path.suffix in TEXT_SUFFIXES and path != Path(__file__).resolve():
                yield rel_root / name, path.read_text(encoding="utf-8", errors="replace")


def design_anchors() -> list[str]:
    return ANCHOR.findall(DESIGN.read_text(encoding="utf-8"))


def test_no_reference_to_files_outside_the_repo():
    hits = [f"{rel}:{n}: {line.strip()}"
            for rel, text in repo_text_files()
            for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "references a reader of the repo cannot follow:\n" + "\n".join(hits)


def test_design_anchors_are_unique():
    anchors = design_anchors()
    assert len(anchors) >= 20, "docs/design.md lost its anchors"
    assert len(anchors) == len(set(anchors)), sorted(a for a in anchors if anchors.count(a) > 1)


def test_every_cited_design_anchor_exists():
    anchors = set(design_anchors())
    missing = []
    for rel, text in repo_text_files():
        cited = set(CITED.findall(text))
        if rel.suffix == ".py" and "docs/design.md" in text:
            cited |= set(SHORT.findall(text))
        if rel == Path("docs/design.md"):
            cited |= set(re.findall(r"\]\(#([a-z0-9-]+)\)", text))
        missing += [f"{rel}: #{name}" for name in sorted(cited - anchors)]
    assert not missing, "cited anchors missing from docs/design.md:\n" + "\n".join(missing)


# this project's tracker words: "issue 13", "issue 3 item 6", "the goal" (a reader of the repo
# has no tracker). An upstream link ("transformers issues #39421") names its project and stays.
TRACKER = re.compile(r"\bissues? \d+|\bthe issue's\b", re.I)
PUBLIC = ("hf_laps", "jobs", "cli", "docs", "benchmarks", "examples", "README.md")


def test_no_tracker_words_in_the_library_help_or_docs():
    hits = [f"{rel}:{n}: {line.strip()}"
            for rel, text in repo_text_files() if rel.parts and rel.parts[0] in PUBLIC
            for n, line in enumerate(text.splitlines(), 1) if TRACKER.search(line)]
    assert not hits, "tracker words (say what is meant instead):\n" + "\n".join(hits)
