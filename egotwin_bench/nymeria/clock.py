"""TIME_CODE <-> Aria device time from matched timestamp pairs.

Nymeria has two clocks (docs/data_format.md): Xsens and narrations run on TIME_CODE, MPS and
camera frames on device time. A `ClockMap` holds (timecode, device) pairs of the same instants
— one per RGB frame — and maps between the clocks by interpolating the offset
``device - timecode`` (a constant offset plus any slow drift); outside the pairs the end
offset is held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ClockError(ValueError):
    """Timestamp pairs are unusable (empty, not increasing)."""


@dataclass(frozen=True)
class ClockMap:
    timecode_ns: np.ndarray
    """(K,) int64 increasing."""
    offset_ns: np.ndarray
    """(K,) int64, device - timecode at each pair."""

    @classmethod
    def from_pairs(cls, timecode_ns: np.ndarray, device_ns: np.ndarray) -> "ClockMap":
        tc = np.asarray(timecode_ns, dtype=np.int64)
        dev = np.asarray(device_ns, dtype=np.int64)
        if tc.shape != dev.shape or tc.ndim != 1 or tc.size == 0:
            raise ClockError(f"need matching 1-D timestamp pairs, got {tc.shape} and {dev.shape}")
        order = np.argsort(tc, kind="stable")
        tc, dev = tc[order], dev[order]
        if np.any(np.diff(tc) <= 0):
            raise ClockError("TIME_CODE timestamps of the pairs are not strictly increasing")
        return cls(tc, dev - tc)

    def _offset(self, t: np.ndarray, grid: np.ndarray) -> np.ndarray:
        off = np.interp(t.astype(np.float64), grid.astype(np.float64), self.offset_ns.astype(np.float64))
        return np.round(off).astype(np.int64)

    def timecode_to_device(self, timecode_ns: np.ndarray) -> np.ndarray:
        t = np.asarray(timecode_ns, dtype=np.int64)
        return t + self._offset(t, self.timecode_ns)

    def device_to_timecode(self, device_ns: np.ndarray) -> np.ndarray:
        t = np.asarray(device_ns, dtype=np.int64)
        return t - self._offset(t, self.timecode_ns + self.offset_ns)

    @property
    def drift_ns(self) -> int:
        """Range of the offset over the pairs (0 for a constant offset)."""
        return int(self.offset_ns.max() - self.offset_ns.min())
