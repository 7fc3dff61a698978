"""Per-clip result cache keyed by content hash, so a new submission costs only its own clips.

Layout: ``<root>/<namespace>/<key[:2]>/<key>.npz``. The namespace names what was computed, with
what and by which toolkit version (`namespace`, e.g. ``poses-builtin-<config digest>-egotwin0.1.0``);
the key is the hash of exactly the inputs the result depends on: results of the video alone
(camera poses, hand presence, video features) use the video bytes' hash (`EvalClip.video_key`),
so a submission sharing videos with an earlier one (the motion-shuffled baseline) reuses them.
Entries are written atomically (temp file + rename), so a killed run leaves no partial entry
and a rerun resumes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from egotwin_bench import __version__


def namespace(kind: str, config_id: str) -> str:
    """Cache folder name of `kind` results made with `config_id`, tagged with the toolkit version."""
    return f"{kind}-{config_id}-egotwin{__version__}"


class ClipCache:
    """A folder of ``.npz`` entries; `root` None disables caching (every `get` misses)."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def _path(self, namespace: str, key: str) -> Path:
        assert self.root is not None
        return self.root / namespace / key[:2] / f"{key}.npz"

    def get(self, namespace: str, key: str) -> dict[str, np.ndarray] | None:
        """The cached arrays, or None on a miss (or an unreadable entry, which is ignored)."""
        if self.root is None:
            return None
        path = self._path(namespace, key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None

    def put(self, namespace: str, key: str, **arrays: np.ndarray) -> None:
        """Store arrays under (namespace, key) atomically; no-op when caching is disabled."""
        if self.root is None:
            return
        path = self._path(namespace, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
