"""PNG plots of an evaluation: metric bars with intervals, camera-vs-head trajectory overlays."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np


def _figure():
    import matplotlib  # lazy: matplotlib (~0.5-1 s to import) only when plots are asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after matplotlib.use("Agg"), so no display backend loads

    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    os.replace(tmp, path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def plot_metric_bars(rows: list[dict], metrics: list[str], folder: Path) -> list[Path]:
    """One bar chart per metric: a bar per method x task with its bootstrap interval."""
    plt = _figure()
    paths = []
    labels = [f"{r['method']}\n{r['task']}" for r in rows]
    for m in metrics:
        values = np.array([r.get(m, np.nan) for r in rows], dtype=float)
        low = np.array([r.get(f"{m}_low", np.nan) for r in rows], dtype=float)
        high = np.array([r.get(f"{m}_high", np.nan) for r in rows], dtype=float)
        err = np.stack([np.nan_to_num(values - low), np.nan_to_num(high - values)])
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows)), 3.5))
        ax.bar(range(len(rows)), values, yerr=np.clip(err, 0, None), capsize=4, color="tab:blue")
        ax.set_xticks(range(len(rows)), labels, fontsize=8)
        ax.set_title(f"{m} (95% bootstrap interval)")
        path = folder / f"metric_{_slug(m)}.png"
        _save(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_trajectories(
    key: str, trajectories: dict[str, tuple[np.ndarray, np.ndarray]], errors: dict[str, float], folder: Path
) -> list[Path]:
    """Top-down (camera x vs z of frame 0) overlays of the scaled estimated camera path and the
    motion's head-camera path for the best and the worst clip by TransErr."""
    if not errors:
        return []
    plt = _figure()
    ranked = sorted(errors, key=errors.get)
    picks = {"best": ranked[0], "worst": ranked[-1]}
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, (label, clip_id) in zip(axes, picks.items()):
        cam, head = trajectories[clip_id]
        ax.plot(head[:, 0], head[:, 2], "-o", ms=2, label="head camera (motion)")
        ax.plot(cam[:, 0], cam[:, 2], "-o", ms=2, label="estimated camera (video, scaled)")
        ax.set_title(f"{label}: {clip_id}\nTransErr {errors[clip_id]:.3f} m", fontsize=8)
        ax.set_xlabel("x (right), m")
        ax.set_ylabel("z (forward), m")
        ax.axis("equal")
    axes[0].legend(fontsize=7)
    fig.suptitle(key)
    path = folder / f"trajectories_{_slug(key)}.png"
    _save(fig, path)
    plt.close(fig)
    return [path]
