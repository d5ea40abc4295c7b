"""Embeddings: deterministic unit vectors per input, as float lists or base64 float32.

Layout copied from the recorded embeddings.json: pretty-printed with two-space indent, keys
object/data/model/usage, each item object/index/embedding, trailing newline.
"""

from __future__ import annotations

import base64
import json
import math
import random
import struct
from typing import Any

from . import text
from .usage import Usage


class BadInput(ValueError):
    """`input` is missing or not one of the accepted layouts."""


def _inputs(raw: Any) -> list[str]:
    """Strings to embed; token-id arrays are keyed by their digits (they only seed vectors)."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(x, int) for x in raw):
            return [" ".join(map(str, raw))]
        if all(isinstance(x, str) for x in raw):
            return list(raw)
        if all(isinstance(x, list) and all(isinstance(i, int) for i in x) for x in raw):
            return [" ".join(map(str, x)) for x in raw]
    raise BadInput("'input' must be a string, a list of strings or token arrays")


def vector(seed_text: str, dimensions: int) -> list[float]:
    rng = random.Random(text.seed_of(seed_text))
    values = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # float32 precision, like the service: a base64 round trip then yields the same numbers.
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in values]


def embeddings_body(body: dict[str, Any], default_dimensions: int, model: str) -> bytes:
    inputs = _inputs(body.get("input"))
    dimensions = body.get("dimensions", default_dimensions)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        raise BadInput("'dimensions' must be a positive integer")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        values = vector(item, dimensions)
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *values)).decode()
            if as_base64
            else values
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(max(1, text.words(i)) for i in inputs)
    usage = Usage(tokens, 0)
    payload = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
    }
    return (json.dumps(payload, indent=2) + "\n").encode()
