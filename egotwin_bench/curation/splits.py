"""Deterministic train / val / test split of sequences (the paper's protocol, §4.2).

Test subjects AND test locations never appear in train. Algorithm (seeded, order-independent):

1. Sequences are ordered by a seeded hash of their id (not by input order).
2. Test is grown greedily: each step adds the (subject, location) pair of the candidate
   sequence that would push the fewest *other* sequences out of train (a sequence sharing
   only its subject or only its location with the test set can be neither train nor test),
   ties broken by the seeded order, until test holds >= `test_fraction` of the sequences
   (at least one). Sequences with location "unknown" are never test candidates.
3. Test = sequences whose subject AND location are both in the test sets; sequences that
   share exactly one of them go to val; of the rest, `val_fraction` (seeded order) go to val,
   the remainder to train.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SplitConfig:
    seed: int = 0
    test_fraction: float = 0.1
    val_fraction: float = 0.1


@dataclass(frozen=True)
class SequenceKey:
    sequence_id: str
    subject_id: str
    location_id: str


def _order(seed: int, sequence_id: str) -> str:
    return hashlib.sha256(f"{seed}:{sequence_id}".encode()).hexdigest()


def assign_splits(sequences: list[SequenceKey], config: SplitConfig = SplitConfig()) -> dict[str, str]:
    """sequence_id -> "train" | "val" | "test"."""
    seqs = sorted(sequences, key=lambda s: _order(config.seed, s.sequence_id))
    n = len(seqs)
    if n == 0:
        return {}
    n_test = max(1, math.ceil(config.test_fraction * n)) if n >= 2 else 0
    subj: set[str] = set()
    loc: set[str] = set()

    def status(s: SequenceKey, subj: set[str], loc: set[str]) -> str:
        a, b = s.subject_id in subj, s.location_id in loc
        return "test" if a and b else ("held" if a or b else "free")

    while sum(status(s, subj, loc) == "test" for s in seqs) < n_test:
        best, best_cost = None, None
        for s in seqs:
            if s.location_id == "unknown" or status(s, subj, loc) == "test":
                continue
            ns, nl = subj | {s.subject_id}, loc | {s.location_id}
            cost = sum(status(o, ns, nl) == "held" for o in seqs)
            if best_cost is None or cost < best_cost:
                best, best_cost = s, cost
        if best is None:
            break
        subj.add(best.subject_id)
        loc.add(best.location_id)
    out: dict[str, str] = {}
    free = []
    for s in seqs:
        st = status(s, subj, loc)
        if st == "test":
            out[s.sequence_id] = "test"
        elif st == "held":
            out[s.sequence_id] = "val"
        else:
            free.append(s)
    n_val = max(0, round(config.val_fraction * n) - sum(v == "val" for v in out.values()))
    if len(free) > 2 and n_val == 0 and "val" not in out.values():
        n_val = 1
    for k, s in enumerate(free):
        out[s.sequence_id] = "val" if k < min(n_val, len(free) - 1) else "train"
    return out
