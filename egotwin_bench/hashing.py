"""Short content digests of configurations and arrays (cache ids of estimators and metric providers)."""

from __future__ import annotations

import hashlib
import json

import numpy as np


def digest(*parts: object, length: int = 12) -> str:
    """Short sha256 hex of `parts` (JSON-encoded, keys sorted; NumPy arrays by their bytes)."""
    def encode(x: object) -> object:
        if isinstance(x, np.ndarray):
            return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest() + str(x.dtype) + str(x.shape)
        return str(x)

    text = json.dumps(parts, sort_keys=True, default=encode)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
