"""Feature layouts shared by the motion representations: named parts -> loss-group indices."""

from __future__ import annotations

from collections.abc import Mapping

GroupIndex = slice | tuple[int, ...]
"""Features of one loss group: a slice when contiguous, else sorted feature indices."""


def loss_groups(slices: Mapping[str, slice], parts: Mapping[str, tuple[str, ...]]) -> dict[str, GroupIndex]:
    """Loss group -> its features, from the per-frame part `slices` and the parts of each group.

    Raises ValueError if a group names an unknown part or two groups share a part."""
    seen: set[str] = set()
    out: dict[str, GroupIndex] = {}
    for group, names in parts.items():
        unknown = [n for n in names if n not in slices]
        shared = seen.intersection(names)
        if unknown or shared or not names:
            raise ValueError(f"loss group {group!r}: unknown parts {unknown}, parts in another group {sorted(shared)}")
        seen.update(names)
        idx = sorted(i for n in names for i in range(slices[n].start, slices[n].stop))
        contiguous = idx == list(range(idx[0], idx[-1] + 1))
        out[group] = slice(idx[0], idx[-1] + 1) if contiguous else tuple(idx)
    return out
