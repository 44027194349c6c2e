"""De-quantised GGUF weights (and the GGUF's tokenizer) cached once, so later starts are fast.

transformers de-quantises a GGUF file to plain float tensors on every load, and builds the
tokenizer from the GGUF vocabulary: for the embedded SmolLM2 that is tens of seconds per start.
The result depends only on the GGUF file's bytes (and the dtype), so it is saved once with
`save_pretrained` (safetensors) under

    $HF_LAPS_CACHE  or  $XDG_CACHE_HOME/hf-laps  or  ~/.cache/hf-laps
      gguf/<sha256 of the GGUF file>/model-<dtype>/   config, model.safetensors, manifest
      gguf/<sha256 of the GGUF file>/tokenizer/       tokenizer files, manifest

Keyed by content, not by path: the sha256 of a GGUF file is computed once and remembered in
`sha256-index.json` under its (path, size, mtime) with a CRC of its first and last MiB, both
re-checked on every start; a file that changed gets a new digest.
Entries are written into a temporary directory and renamed into place (a crash never leaves a
half-written entry), and each entry's manifest records the size and CRC-32 of every file, checked
on every read (~0.4 s for 500 MB): a corrupt entry is rebuilt with a warning. A cache that cannot
be written (read-only home, full disk) costs a warning, never the run.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Callable, TypeVar

CACHE_ENV = "HF_LAPS_CACHE"
MANIFEST = "hf_laps_cache.json"
FORMAT_VERSION = 1
CHUNK = 1 << 24  # 16 MiB reads: constant memory whatever the file size

T = TypeVar("T")


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hf-laps"


def entry_dir(gguf_path: Path, kind: str, root: Path | None = None) -> Path:
    """The cache directory of one product (`model-float32`, `tokenizer`) of a GGUF file."""
    root = cache_root() if root is None else root
    return root / "gguf" / file_sha256(gguf_path, root) / kind


def cached(directory: Path, build: Callable[[], T], save: Callable[[T, Path], None], load: Callable[[Path], T]) -> T:
    """`load(directory)` if the entry is intact, else `build()` and save it for next time."""
    if directory.is_dir():
        problem = _verify(directory)
        if problem is None:
            try:
                return load(directory)
            except Exception as exc:  # safetensors / json raise their own types on bad bytes
                problem = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"hf-laps cache entry {directory} is corrupt ({problem}); rebuilding it", stacklevel=2)
    value = build()
    store(directory, lambda tmp: save(value, tmp))
    return value


def store(directory: Path, write: Callable[[Path], None]) -> None:
    """Write an entry atomically: into a temp dir next to it, manifest last, then rename."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory.parent))
    except OSError as exc:
        warnings.warn(f"hf-laps cache not written ({exc}); the next start converts again", stacklevel=2)
        return
    try:
        write(tmp)
        _write_manifest(tmp)
        _replace_dir(tmp, directory)
    except OSError as exc:
        warnings.warn(f"hf-laps cache not written ({exc}); the next start converts again", stacklevel=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(tmp: Path, directory: Path) -> None:
    if directory.exists():  # a corrupt entry: move it aside first (rename is atomic, rmtree is not)
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=directory.parent))
        os.replace(directory, trash / "old")
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(tmp, directory)
    except OSError:
        if not directory.is_dir():  # another process renaming the same entry first is fine
            raise


# ---- integrity ---------------------------------------------------------------------------------
def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _write_manifest(directory: Path) -> None:
    files = {str(p.relative_to(directory)): {"size": p.stat().st_size, "crc32": _crc32(p)} for p in _files(directory)}
    manifest = {"format_version": FORMAT_VERSION, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _verify(directory: Path) -> str | None:
    """None when every file the manifest lists is there with its size and CRC; else why not."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            return f"format {manifest.get('format_version')}"
        for name, expected in manifest["files"].items():
            path = directory / name
            if path.stat().st_size != expected["size"]:
                return f"{name} has {path.stat().st_size} bytes, expected {expected['size']}"
            if _crc32(path) != expected["crc32"]:
                return f"{name} checksum mismatch"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# ---- the GGUF file's digest, computed once ------------------------------------------------------
def file_sha256(path: Path, root: Path) -> str:
    """sha256 of `path`, computed once and remembered in the cache root.

    The index is keyed by (resolved path, size, mtime_ns) and also stores a CRC-32 of the
    file's first and last MiB, re-checked on every hit (milliseconds): a file rewritten in
    place with the same size and mtime is still noticed unless it differs only in its middle.
    """
    import hashlib

    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = root / "sha256-index.json"
    index = _read_index(index_path)
    sample = _edge_crc32(path)
    known = index.get(key)
    if isinstance(known, dict) and known.get("edges_crc32") == sample and isinstance(known.get("sha256"), str):
        return known["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    index[key] = {"sha256": digest.hexdigest(), "edges_crc32": sample}
    _write_index(index_path, index)
    return digest.hexdigest()


def _edge_crc32(path: Path, edge: int = 1 << 20) -> int:
    with open(path, "rb") as handle:
        head = handle.read(edge)
        handle.seek(max(0, path.stat().st_size - edge))
        return zlib.crc32(handle.read(edge), zlib.crc32(head))


def _read_index(path: Path) -> dict:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        return index if isinstance(index, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_index(path: Path, index: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # only a speed-up: the digest is recomputed next time
