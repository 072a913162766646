"""Error texts for the command line: the Python argument names they mention, as flags."""

from __future__ import annotations

import re

__all__ = ["flag_names"]

# Errors raised below the command line name Python arguments; the user typed flags.
_FLAGS = {
    "keys": "--keys",
    "allow_keys": "--allow-key",
    "peer_keys": "--peer-key",
    "allow_spawn": "--allow-spawn",
    "insecure": "--insecure",
    "save_to": "--save",
    "max_new_tokens": "--max-tokens",
    "temperature": "--temperature",
    "interval": "--interval",
    "token": "--token",
}
_ASSIGNED = re.compile(r"(?<![\w-])(" + "|".join(_FLAGS) + r")=(True\b)?(?=(\S?))")
# A bare name only when it has an underscore: ``keys`` is also a word.
_BARE = re.compile(r"(?<![\w-])(" + "|".join(n for n in _FLAGS if "_" in n) + r")\b")


def flag_names(text: str) -> str:
    """``text`` with the Python argument names it mentions (``keys=``) as flags (``--keys``)."""

    def assigned(m: re.Match[str]) -> str:
        value_follows = not m.group(2) and m.group(3) not in ("", ",", ".", ";", ")")
        return _FLAGS[m.group(1)] + (" " if value_follows else "")

    text = _ASSIGNED.sub(assigned, text)
    return _BARE.sub(lambda m: _FLAGS[m.group(1)], text)
