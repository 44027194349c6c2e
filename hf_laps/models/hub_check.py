"""A hub id that cannot be loaded fails in seconds, before the model load, with one line.

Left to the loader, a hub id on a machine without network spends 30-45 s in huggingface_hub's
retries ("Name or service not known", five times) before its error. Here, once per process:

- HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set: the id must be in the local cache;
- otherwise one connection attempt to the hub endpoint (HF_ENDPOINT), a few seconds at most.
  If it fails, the id must be in the local cache, and the hub is switched to offline mode for
  this process so that the load reads the cache without retrying the network.
"""
from __future__ import annotations

import functools
import socket
from urllib.parse import urlparse

CONNECT_TIMEOUT = 3.0  # seconds: a reachable hub answers a TCP connect far sooner


class HubUnavailable(ValueError):
    """The hub id cannot be loaded here; the message is one line saying why and what to do."""


def check_hub_id(repo_id: str) -> None:
    """Raise HubUnavailable when `repo_id` is neither reachable on the hub nor cached."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        if not _cached(repo_id):
            raise HubUnavailable(f"model {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                                 "set; download it first (huggingface-cli download) or pass a local directory")
        return
    problem = _unreachable(constants.ENDPOINT)
    if problem is None:
        return
    if not _cached(repo_id):
        raise HubUnavailable(f"model {repo_id!r}: cannot reach {constants.ENDPOINT} ({problem}) and it is not in the "
                             "local Hugging Face cache; pass a local directory or .gguf file, or check the network")
    constants.HF_HUB_OFFLINE = True  # load from the cache without five retries per file


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


@functools.lru_cache(maxsize=None)
def _unreachable(endpoint: str) -> str | None:
    """None when a TCP connection to the endpoint opens, else why not (asked once per process)."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None
