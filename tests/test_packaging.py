"""The installed package holds every module of the tree, and the suite tests the installed copy.

CI installs the wheel (`pip install .`) and runs the suite from the checkout's root; conftest keeps
the checkout off sys.path. These tests fail if setup.py stops finding a package (a module missing
from the wheel) or if the checkout shadows the installed package.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# repository folder -> installed package (setup.py's FOLDERS)
FOLDERS = {"hf_laps": "hf_laps", "jobs": "hf_laps.jobs", "cli": "hf_laps.cli"}


def tree_modules() -> list[str]:
    names = []
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__main__" or "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join((package, *parts)))
    return names


@pytest.mark.torchfree
def test_the_tree_has_the_layers_packages():
    names = tree_modules()
    assert len(names) > 60
    for layer in ("engine", "models", "serving", "replay", "scheduling.policies", "scheduling.predictors"):
        assert f"hf_laps.{layer}" in names, layer


# the modules that need torch to import (the engine, the model loaders and what wraps them); every
# other module must import without torch, so its import test is `torchfree`
NEEDS_TORCH = ("hf_laps.compat", "hf_laps.engine.", "hf_laps.models.loading", "hf_laps.preflight",
               "hf_laps.serving.batch_executor", "hf_laps.serving.custom_generate", "hf_laps.serving.engine_executor",
               "hf_laps.serving.generator",
               "hf_laps.serving.inputs", "hf_laps.jobs.bench", "hf_laps.jobs.runner", "hf_laps.jobs.sharded")


def _import_case(name: str):
    needs_torch = any(name == n or name.startswith(n) for n in NEEDS_TORCH)
    return pytest.param(name, marks=() if needs_torch else pytest.mark.torchfree, id=name)


@pytest.mark.parametrize("name", [_import_case(n) for n in tree_modules()])
def test_every_module_of_the_tree_imports_from_the_installed_package(name):
    importlib.import_module(name)


@pytest.mark.torchfree
@pytest.mark.skipif(os.environ.get("HF_LAPS_TEST_INSTALLED") != "1",
                    reason="set HF_LAPS_TEST_INSTALLED=1 (CI does) to require a non-editable install")
def test_the_suite_imports_the_installed_copy_not_the_checkout():
    import hf_laps

    # the installed copy (site-packages, even of a virtual environment inside the checkout), not hf_laps/
    assert Path(hf_laps.__file__).resolve().parent != REPO / "hf_laps", hf_laps.__file__


@pytest.mark.torchfree
def test_hf_laps_root_is_a_few_modules_and_no_module_is_long():
    root = [p.name for p in (REPO / "hf_laps").glob("*.py")]
    assert len(root) <= 10, root
    long = {str(p.relative_to(REPO)): n for folder in FOLDERS for p in (REPO / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, long
