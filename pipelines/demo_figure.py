"""The README's picture: reference vs. generated clips of a demo run, and its leaderboard.

    python pipelines/demo_figure.py --dataset demo_out/dataset --submissions demo_out/submissions \
        --results demo_out/results --out docs/demo_results.png

Rows per test clip: the reference video (5 of its 41 frames) and each submission's video at the
same frames, with a top-down plot of the head path (metres, each path relative to its frame 0).
The leaderboard's main columns are printed below the frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from egotwin_bench import skeleton
from egotwin_bench.curation.video import decode_mp4
from egotwin_bench.evaluate.reference import load_clips
from egotwin_bench.evaluate.runner import find_submissions
from egotwin_bench.evaluate.submission import read_motion, read_meta

FRAMES = (0, 10, 20, 30, 40)
"""Video frames shown per clip (of 41 at 8 FPS: 0, 1.25, 2.5, 3.75, 5 s)."""
COLUMNS = ("TransErr", "RotErr", "HandScore", "R-Prec", "MM-Dist")


def head_path(positions: np.ndarray) -> np.ndarray:
    """(81, 23, 3) world joints -> (81, 2) head XY relative to frame 0, metres."""
    xy = positions[:, skeleton.HEAD, :2]
    return xy - xy[:1]


def leaderboard_text(results: Path) -> str:
    """The leaderboard's method/task and main metric columns, as fixed-width text."""
    board = pl.read_csv(results / "leaderboard.csv")
    cols = ["method", "task", "n_clips", *[c for c in COLUMNS if c in board.columns]]
    lines = ["  ".join(f"{c:>16}" for c in cols)]
    for row in board.select(cols).iter_rows():
        lines.append("  ".join(f"{v:>16.3f}" if isinstance(v, float) else f"{v!s:>16}" for v in row))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--submissions", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=2, help="Test clips shown.")
    args = parser.parse_args()

    import matplotlib  # lazy: as in egotwin_bench.evaluate.plots, the backend is chosen when the figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after matplotlib.use("Agg"), so no display backend loads

    refs = load_clips(args.dataset, "test", limit=args.clips)
    subs = [(read_meta(s), s) for s in find_submissions(args.submissions)]
    subs = [(m, s) for m, s in subs if m.method != "ground_truth"]  # the reference row shows it
    rows = len(refs) * (1 + len(subs))
    fig = plt.figure(figsize=(2.0 * (len(FRAMES) + 1.6), 2.0 * rows + 1.4 + 0.25 * (len(subs) + 2)))
    grid = fig.add_gridspec(rows + 1, len(FRAMES) + 2, height_ratios=[1] * rows + [0.6 + 0.12 * len(subs)])
    r = 0
    for ref in refs:
        entries = [("reference", decode_mp4(ref.video_mp4), ref.positions)]
        for meta, folder in subs:
            positions, _ = read_motion(folder / f"{ref.clip_id}.npz", meta.motion_format)
            entries.append((meta.method, decode_mp4((folder / f"{ref.clip_id}.mp4").read_bytes()), positions))
        path_ax = fig.add_subplot(grid[r : r + len(entries), -1])
        for name, video, positions in entries:
            for j, k in enumerate(FRAMES):
                ax = fig.add_subplot(grid[r, j])
                ax.imshow(video[k])
                ax.set_xticks([]), ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(name, fontsize=8)
                if r == 0:
                    ax.set_title(f"t = {k / 8:.2f} s", fontsize=8)
            xy = head_path(positions)
            path_ax.plot(xy[:, 0], xy[:, 1], label=name)
            r += 1
        fig.add_subplot(grid[r - len(entries), len(FRAMES)]).text(
            0, 0.5, "\n".join(ref.text[i : i + 28] for i in range(0, min(len(ref.text), 140), 28)),
            fontsize=7, va="center", wrap=True)
        fig.axes[-1].axis("off")
        path_ax.set_aspect("equal", adjustable="datalim")
        path_ax.set_title("head path (m)", fontsize=8)
        path_ax.legend(fontsize=6)
    table = fig.add_subplot(grid[-1, :])
    table.axis("off")
    table.text(0, 1, leaderboard_text(args.results), family="monospace", fontsize=7, va="top")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
