"""Clip policy: which 5 s windows of a sequence become clips, and which text each carries.

Policy (docs/curation.md):

* Candidates come from one narration file (default ``atomic_action``); its text column
  (default ``Describe my atomic actions``) is the prompt, recorded as
  ``"<file>:<column>"`` in `text_source`.
* A narration window of length >= 5 s is tiled with back-to-back 5 s clips, centred in the
  window (the leftover is split evenly at both ends), so every clip lies fully inside its
  narration. A shorter window of at least `min_narration_s` yields one 5 s clip centred on
  it (the text then describes the central part of the clip). Shorter ones are dropped
  ("narration_too_short").
* Overlaps: candidates are taken in start order; one overlapping an already accepted clip by
  more than `max_overlap_s` is dropped ("overlap"), so clips never share more than that
  (default 0: clips are disjoint, no frame is in two clips of the dataset).
* Every clip must lie inside the span where Xsens, the MPS trajectory and the RGB frames all
  have data ("outside_data"); empty text drops it ("empty_text").
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
    max_overlap_s: float = 0.0


@dataclass(frozen=True)
class ClipWindow:
    t0_ns: int
    """TIME_CODE of video frame 0 / motion frame 0."""
    text: str
    narration_index: int

    @property
    def t1_ns(self) -> int:
        return self.t0_ns + CLIP_NS


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
    candidates: list[ClipWindow] = []
    for k in np.argsort(table.start_ns, kind="stable"):
        start, end = int(table.start_ns[k]), int(table.end_ns[k])
        text = texts[k]
        if not text:
            drops["empty_text"] += 1
            continue
        length = end - start
        if length >= CLIP_NS:
            n = length // CLIP_NS
            first = start + (length - n * CLIP_NS) // 2
            starts = [first + i * CLIP_NS for i in range(n)]
        elif length >= policy.min_narration_s * 1e9:
            starts = [start + length // 2 - CLIP_NS // 2]
        else:
            drops["narration_too_short"] += 1
            continue
        candidates += [ClipWindow(s, text, int(k)) for s in starts]
    accepted: list[ClipWindow] = []
    max_overlap = int(round(policy.max_overlap_s * 1e9))
    for c in sorted(candidates, key=lambda w: w.t0_ns):
        if c.t0_ns < data_span_ns[0] or c.t1_ns > data_span_ns[1]:
            drops["outside_data"] += 1
        elif accepted and accepted[-1].t1_ns - c.t0_ns > max_overlap:
            drops["overlap"] += 1
        else:
            accepted.append(c)
    return accepted, drops
