"""Reading weights from repos hubmod does not trust: safetensors only, header checked before any data.

A safetensors file is an 8-byte header length, a JSON header naming every tensor's dtype, shape and
byte range, then the raw bytes. hubmod parses that header itself and compares it with the tensors
the model rebuilt from config.json expects *before* reading the data, so a file that is truncated,
padded, oversized, malformed or made for another architecture fails with one line naming the
first problem, and a crafted header cannot make hubmod allocate what the config did not ask for.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from .errors import InvalidRepoError
from .untrusted import parse_json

WEIGHTS = "model.safetensors"  # every repo kind's one weights file

MAX_HEADER_BYTES = 64 * 1024 * 1024
_ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
_TORCH_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                torch.bool: "BOOL"}


def read_header(path: Path, where: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) from a safetensors header, after checking it describes the file exactly."""

    def bad(msg: str) -> InvalidRepoError:
        return InvalidRepoError(f"{where}: {path.name} {msg}; hubmod only loads well-formed safetensors, re-publish it")

    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad("is too short to be safetensors")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise bad(f"declares a {n}-byte header in a {size}-byte file")
        raw = f.read(n)
    header = parse_json(raw, path.name, lambda _message: bad("has a header that is not plain JSON"))
    if not isinstance(header, dict):
        raise bad("has a header that is not a JSON object")
    header.pop("__metadata__", None)
    out, ranges = {}, []
    for name, info in header.items():
        if not (isinstance(info, dict) and info.get("dtype") in _ITEM_BYTES and isinstance(info.get("shape"), list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in info["shape"])
                and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in info["data_offsets"])):
            raise bad(f"has a malformed entry for tensor {name!r}")
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end or end - begin != math.prod(info["shape"]) * _ITEM_BYTES[info["dtype"]]:
            raise bad(f"gives tensor {name!r} a byte range that does not fit its shape")
        out[name] = (info["dtype"], tuple(info["shape"]))
        ranges.append((begin, end))
    covered = 0
    for begin, end in sorted(ranges):
        if begin != covered:
            raise bad("has overlapping or gapped tensor data")
        covered = end
    if covered != size - 8 - n:
        raise bad(f"holds {size - 8 - n} data bytes but its header describes {covered}")
    return out


def check_header(header: Mapping[str, tuple[str, tuple[int, ...]]], expected: Mapping[str, torch.Tensor],
                 path: Path, where: str) -> None:
    """Every expected tensor present with its shape and dtype, and nothing else."""

    def bad(msg: str) -> InvalidRepoError:
        return InvalidRepoError(f"{where}: {path.name} {msg}; weights and config.json disagree, re-publish the repo")

    missing = [k for k in expected if k not in header]
    if missing:
        raise bad(f"lacks {len(missing)} tensor(s) the config needs, e.g. {missing[0]!r}")
    extra = [k for k in header if k not in expected]
    if extra:
        raise bad(f"holds {len(extra)} tensor(s) the config does not use, e.g. {extra[0]!r}")
    for name, tensor in expected.items():
        dtype, shape = header[name]
        if shape != tuple(tensor.shape):
            raise bad(f"gives {name!r} shape {list(shape)}, the config builds {list(tensor.shape)}")
        if dtype != _TORCH_NAMES.get(tensor.dtype, dtype):
            raise bad(f"stores {name!r} as {dtype}, the model holds {_TORCH_NAMES.get(tensor.dtype)}")


def load_checked(path: Path, expected: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, read only after the header matched ``expected`` (a state dict)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_header(read_header(path, where), expected, path, where)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InvalidRepoError(f"{where}: {path.name} is corrupt ({e}); re-publish it") from None


def load_parts(path: Path, parts: Mapping[str, nn.Module], where: str) -> None:
    """Load ``path`` into models whose tensors sit under the given prefixes, checked before any data is read.

    ``{"": model}`` is a plain file; ``{"weak.": weak, "module.": module}`` a consolidated one. A model
    still on the meta device (a skeleton from ``ParentSpec.build(lazy=True)``) is allocated only
    after the file's header matched its shapes, then filled from the file.
    """
    expected = {prefix + k: v for prefix, model in parts.items() for k, v in model.state_dict().items()}
    state = load_checked(path, expected, where)
    for prefix, model in parts.items():
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            model.to_empty(device="cpu")
        model.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)


def substate(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix`` (e.g. ``"modules.3."``) with the prefix removed: one part of a consolidated file."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
