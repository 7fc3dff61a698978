"""Clip policy: which 5 s windows of a sequence become clips, and which text each carries.

Policy (docs/curation.md):

* Candidates come from one narration file (default ``atomic_action``); its text column
  (default ``Describe my atomic actions``) is the prompt, recorded as
  ``"<file>:<column>"`` in `text_source`.
* A narration window of length L >= 5 s yields n = floor(L / 5 s) back-to-back 5 s clips lying
  inside it; a window of `min_narration_s` <= L < 5 s yields one clip that contains it (or at
  least `min_coverage` of it); shorter windows are dropped ("narration_too_short"). Empty text
  drops the window ("empty_text").
* Placement: windows are taken in start order; the block of n clips is centred on its window
  when it can be, otherwise moved as little as possible so that it (a) keeps the coverage rule
  above, (b) lies inside the span where Xsens, MPS and RGB all have data and (c) overlaps the
  previously accepted clip by at most `max_overlap_s` (default 0: clips are disjoint, no frame
  is in two clips). If no position fits, the block loses clips from its end until one fits; clips
  that cannot be placed are counted as "outside_data" (the data span alone forbids them) or
  "overlap".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from egotwin_bench.constants import CLIP_SECONDS
from egotwin_bench.nymeria.narration import NarrationTable

CLIP_NS: int = int(round(CLIP_SECONDS * 1e9))


@dataclass(frozen=True)
class WindowPolicy:
    narration_file: str = "atomic_action"
    text_column: str = "Describe my atomic actions"
    min_narration_s: float = 2.0
    """Narration windows shorter than this give no clip."""
    min_coverage: float = 0.9
    """A window shorter than 5 s may stick out of its clip by at most (1 - this) of its length."""
    max_overlap_s: float = 0.0
    """Largest overlap of two clips of a sequence."""


@dataclass(frozen=True)
class ClipWindow:
    t0_ns: int
    """TIME_CODE of video frame 0 / motion frame 0."""
    text: str
    narration_index: int

    @property
    def t1_ns(self) -> int:
        return self.t0_ns + CLIP_NS


def _block_range(start: int, end: int, n: int, min_coverage: float) -> tuple[int, int]:
    """Allowed start times of a block of n clips for the narration [start, end) (ns)."""
    length = end - start
    if length >= n * CLIP_NS:
        return start, end - n * CLIP_NS  # the clips lie inside the narration
    slack = int(round(min_coverage * length))  # a shorter narration lies (mostly) inside the clip
    return start + slack - CLIP_NS, end - slack


def clip_windows(
    table: NarrationTable, data_span_ns: tuple[int, int], policy: WindowPolicy = WindowPolicy()
) -> tuple[list[ClipWindow], Counter]:
    """Clip windows (TIME_CODE) of a narration table resolved to TIME_CODE, plus drop counts."""
    drops: Counter = Counter()
    if policy.text_column not in table.columns:
        raise KeyError(
            f"narration '{table.source}' has no column '{policy.text_column}'; columns: {sorted(table.columns)}"
        )
    texts = table.columns[policy.text_column]
    max_overlap = int(round(policy.max_overlap_s * 1e9))
    accepted: list[ClipWindow] = []
    for k in np.argsort(table.start_ns, kind="stable"):
        start, end = int(table.start_ns[k]), int(table.end_ns[k])
        text = texts[k]
        if not text:
            drops["empty_text"] += 1
            continue
        length = end - start
        if length < policy.min_narration_s * 1e9:
            drops["narration_too_short"] += 1
            continue
        n_max = max(1, length // CLIP_NS)
        after = accepted[-1].t1_ns - max_overlap if accepted else data_span_ns[0]
        reason = None  # why the full block of n_max clips does not fit
        for n in range(n_max, 0, -1):
            lo, hi = _block_range(start, end, n, policy.min_coverage)
            lo_data, hi_data = max(lo, data_span_ns[0]), min(hi, data_span_ns[1] - n * CLIP_NS)
            lo_all = max(lo_data, after)
            if lo_all <= hi_data:
                centred = start + (length - n * CLIP_NS) // 2
                t0 = min(max(centred, lo_all), hi_data)
                accepted += [ClipWindow(t0 + i * CLIP_NS, text, int(k)) for i in range(n)]
                break
            reason = reason or ("outside_data" if lo_data > hi_data else "overlap")
        else:
            n = 0
        if n < n_max:
            drops[reason] += n_max - n
    return accepted, drops
