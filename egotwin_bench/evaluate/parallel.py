"""Map a function over clips: Ray tasks when asked (and Ray is running), in-process otherwise; with progress."""

from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm


def map_items(fn: Callable[[Any], Any], items: Sequence[Any], desc: str, parallel: bool = False,
              num_cpus: float = 1.0) -> list[Any]:
    """``[fn(x) for x in items]`` in order; one Ray task per item when `parallel` and Ray is initialised
    (`evaluate --workers N` starts it). `fn` and the items must be importable by Ray workers.

    Exceptions raised by `fn` propagate (callers that want per-item skips catch inside `fn`).
    """
    ray = sys.modules.get("ray")  # Ray cannot be initialised unless it was imported: skip its import cost
    if not parallel or ray is None or not ray.is_initialized() or len(items) <= 1:
        return [fn(x) for x in tqdm(items, desc=desc, leave=False)]
    remote = ray.remote(num_cpus=num_cpus)(fn)
    refs = [remote.remote(x) for x in items]
    index = {ref: i for i, ref in enumerate(refs)}
    out: list[Any] = [None] * len(items)
    pending = list(refs)
    with tqdm(total=len(items), desc=desc, leave=False) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                out[index[ref]] = ray.get(ref)
                bar.update(1)
    return out
