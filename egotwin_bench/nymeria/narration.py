"""Nymeria narration CSVs (`narration/<name>.csv`): time windows with free-text columns.

Released files (what the public Nymeria downloads hold) have the columns ``request_id,
gaia_id, start_time, end_time, annotator, creation_time`` and then the text columns:
``Describe my atomic actions`` (atomic_action.csv), ``Describe my body posture`` /
``Describe my hands/arms motion`` / ``Describe my legs/feet motion`` / ``Describe my focus
attention`` (motion_narration.csv), ``Describe my activity`` (activity_summarization.csv).
``start_time`` / ``end_time`` are float seconds on the head Aria device clock. Files may start
with a UTF-8 byte-order mark (tolerated). Other columns are kept as text columns and ignored.

The rule for the time values (decided per file from the data itself, recorded in the table):

* **Unit**: values whose magnitude stays below 1e8 are seconds, larger values are integer
  nanoseconds (`make-synthetic` without ``--realism`` writes integer TIME_CODE ns). 1e8 s is
  over three years, beyond a device clock (time since boot) or a TIME_CODE in seconds, and
  1e8 ns is 0.1 s, below any real timestamp in ns. Unix-epoch seconds (~1.7e9) would be
  misread as ns (and then fit neither clock: a clear error).
* **Clock**: TIME_CODE or Aria device time. `resolve_to_timecode` takes the clock under which
  the windows overlap the sequence's data span (TIME_CODE) the most. A tie (both clocks overlap
  the same, e.g. a device clock that equals TIME_CODE) takes device time, the clock of the
  released files, and says so in `NarrationTable.note` naming both candidates (the curation
  copies it into the sequence report). Neither overlapping raises `NarrationError`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

SECONDS_BELOW: float = 1e8
"""Time values with |v| < this are seconds, otherwise nanoseconds."""


class NarrationError(ValueError):
    """A narration file is unreadable or its times fit neither clock."""


@dataclass(frozen=True)
class NarrationTable:
    """One narration CSV: N windows and their text columns."""

    source: str
    """File stem, e.g. "atomic_action"."""
    start_ns: np.ndarray
    """(N,) int64 window starts in the file's clock, nanoseconds."""
    end_ns: np.ndarray
    """(N,) int64 window ends, nanoseconds."""
    columns: dict[str, list[str]]
    """Text column name -> N strings (stripped; "" where empty)."""
    unit: str
    """"s" or "ns": the unit found in the file."""
    clock: str = "unknown"
    """The clock the file's times were found on: "timecode" or "device" (after
    `resolve_to_timecode`; the arrays are then TIME_CODE), else "unknown"."""
    note: str | None = None
    """Set by `resolve_to_timecode` when both clocks fit equally well (names both)."""

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])


def read_narration_csv(path: str | Path) -> NarrationTable:
    """Parse a narration CSV; rows with unparsable or inverted times are dropped."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a leading BOM is dropped
            rows = list(csv.DictReader(fh))
            fieldnames = list(rows[0].keys()) if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NarrationError(f"{path}: unreadable ({exc})") from exc
    if rows and not {"start_time", "end_time"} <= set(fieldnames):
        raise NarrationError(f"{path}: needs start_time and end_time columns, has {fieldnames}")
    starts, ends, kept = [], [], []
    for row in rows:
        try:
            s, e = float(row["start_time"]), float(row["end_time"])
        except (TypeError, ValueError):
            continue
        if np.isfinite(s) and np.isfinite(e) and e > s:
            starts.append(s)
            ends.append(e)
            kept.append(row)
    values = np.array(starts + ends, dtype=np.float64)
    unit = "s" if values.size and np.max(np.abs(values)) < SECONDS_BELOW else "ns"
    scale = 1e9 if unit == "s" else 1.0
    text_cols = [c for c in fieldnames if c not in ("start_time", "end_time")]
    columns = {c: [(r.get(c) or "").strip() for r in kept] for c in text_cols}
    return NarrationTable(
        source=path.stem,
        start_ns=np.round(np.array(starts) * scale).astype(np.int64),
        end_ns=np.round(np.array(ends) * scale).astype(np.int64),
        columns=columns,
        unit=unit,
    )


def _overlap_seconds(start: np.ndarray, end: np.ndarray, span: tuple[int, int]) -> float:
    return float(np.clip(np.minimum(end, span[1]) - np.maximum(start, span[0]), 0, None).sum() / 1e9)


def resolve_to_timecode(
    table: NarrationTable,
    timecode_span_ns: tuple[int, int],
    device_to_timecode_ns: Callable[[np.ndarray], np.ndarray],
) -> NarrationTable:
    """Express the windows in TIME_CODE ns, choosing the clock that overlaps the data span
    (rule in the module docstring)."""
    if len(table) == 0:
        return replace(table, clock="timecode")
    as_tc = _overlap_seconds(table.start_ns, table.end_ns, timecode_span_ns)
    dev_start = device_to_timecode_ns(table.start_ns)
    dev_end = device_to_timecode_ns(table.end_ns)
    as_dev = _overlap_seconds(dev_start, dev_end, timecode_span_ns)
    if as_tc == 0 and as_dev == 0:
        raise NarrationError(
            f"{table.source}: narration windows overlap the Xsens span neither as TIME_CODE nor as "
            f"device time (unit {table.unit}); check the file's clock"
        )
    if as_tc > as_dev:
        return replace(table, clock="timecode")
    note = None
    if as_tc == as_dev:
        note = (f"{table.source}: narration times fit TIME_CODE and device time equally ({as_dev:.1f} s of "
                "overlap each); read them as device time (the released files' clock)")
    return replace(table, start_ns=dev_start, end_ns=dev_end, clock="device", note=note)
