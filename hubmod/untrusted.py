"""Reading what strangers wrote: JSON with bounds, fields checked by type, text made safe to print.

Everything hubmod reads from a repo (config.json, a split index, a safetensors header, the embedded
hub's refs) is parsed by `parse_json` and its fields checked by the `Fields` helpers before any of
them is used, so a hostile file fails with one line naming the field instead of a KeyError,
RecursionError or ValueError from deep inside. Text that came from a repo (class names, repo ids,
error details) passes through `printable` before it reaches a terminal.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from .errors import InvalidRepoError, first_line

MAX_DEPTH = 64  # hubmod's own files nest a handful of levels deep
MAX_STRING = 10_000


def parse_json(raw: bytes | str, where: str, error: Callable[[str], Exception] = InvalidRepoError) -> Any:
    """Parse untrusted JSON: nesting, integer size and encoding problems are one-line errors, not tracebacks."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise error(f"{where} nests deeper than any hubmod file; it is not a hubmod or timm file") from None
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, and ints over Python's digit limit
        raise error(f"{where} is not valid JSON ({first_line(e)})") from None
    if _depth(value) > MAX_DEPTH:
        raise error(f"{where} nests deeper than {MAX_DEPTH} levels; it is not a hubmod or timm file")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


# --------------------------------------------------------------------------- field checks


class Fields:
    """Typed access to one JSON object from a repo; every failure names the file, the field and the fix.

    ``Fields(data, "alice/x config.json").str("class_name")`` returns the value or raises
    `InvalidRepoError` ("alice/x config.json: field 'class_name' must be a string; ...").
    """

    def __init__(self, data: Any, where: str, fix: str = "the repo is damaged, re-publish it"):
        self.where = where
        self.fix = fix
        if not isinstance(data, dict):
            raise self.error(f"must be a JSON object, not {type(data).__name__}")
        self.data = data

    def error(self, message: str) -> InvalidRepoError:
        return InvalidRepoError(f"{self.where}: {message}; {self.fix}")

    def _get(self, key: str, optional: bool) -> Any:
        if key not in self.data:
            if optional:
                return None
            raise self.error(f"field {key!r} is missing")
        return self.data[key]

    def str(self, key: str, optional: bool = False, max_len: int = MAX_STRING,
            pattern: re.Pattern | None = None) -> str | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise self.error(f"field {key!r} must be a non-empty string of at most {max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(f"field {key!r} is {printable(value)!r}, which is not of the expected form")
        return value

    def int(self, key: str, optional: bool = False, lo: int | None = None, hi: int | None = None) -> int | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if type(value) is not int or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.error(f"field {key!r} must be an integer{_range(lo, hi)}")
        return value

    def number(self, key: str, optional: bool = False, lo: float | None = None,
               hi: float | None = None) -> float | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if (type(value) not in (int, float) or not math.isfinite(value)
                or (lo is not None and value < lo) or (hi is not None and value > hi)):
            raise self.error(f"field {key!r} must be a finite number{_range(lo, hi)}")
        return float(value)

    def bool(self, key: str, optional: bool = False) -> bool | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, bool):
            raise self.error(f"field {key!r} must be true or false")
        return value

    def list(self, key: str, optional: bool = False, max_len: int = 1_000_000) -> list | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, list) or len(value) > max_len:
            raise self.error(f"field {key!r} must be a list of at most {max_len:,} items")
        return value

    def obj(self, key: str, optional: bool = False) -> Fields | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            raise self.error(f"field {key!r} must be a JSON object")
        return Fields(value, f"{self.where} {key}", self.fix)


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" in {lo}..{hi}"
    if lo is not None:
        return f" >= {lo}"
    return f" <= {hi}" if hi is not None else ""


# --------------------------------------------------------------------------- printing


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def printable(text: object) -> str:
    """``text`` with control and bidi characters shown as escapes (``\\x1b``), safe for any terminal.

    Rich markup is not escaped here (that is the printer's job, see ``rich.markup.escape``).
    """
    out = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))
    return "".join(c if unicodedata.category(c) != "Cc" else repr(c)[1:-1] for c in out)


def check_format_version(data: dict, expected: int, what: str, where: str, required: bool = True) -> None:
    """One line unless ``data`` (a repo's JSON) is in the ``what`` format version this hubmod reads: a repo
    written by a newer hubmod is refused with what to do, never half-read. ``required=False`` reads a
    missing version as ``expected`` (files written before the version was recorded)."""
    found = data.get("format_version", expected if not required else None)
    if found != expected:
        raise InvalidRepoError(f"{where} uses {what} format {printable(found)[:60]!r}; this hubmod reads format "
                               f"{expected}: upgrade hubmod")
