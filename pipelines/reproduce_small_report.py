"""The report of the small-scale reproduction (`pipelines/reproduce_small.sh`, issue #15).

Reads ``REPRO/results/leaderboard.csv`` (the benchmark's own `evaluate`; ``--results`` another), the GPU chunks' meta
files (``REPRO/meta``: condition probes, training logs, timings) and the TV2M submissions, and
writes to ``--out`` (docs/reproduction/):

* ``summary.md``     the Table 1/2-style leaderboard, the condition probes, the TV2M head
                     trajectory against the reference camera (no pose estimator), device time
* ``results.json``   the same numbers
* ``curves.png``     training curves of every stage and variant
* ``clips.png``      a few test clips: reference vs EgoTwin vs VidMLD frames, and head paths
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from egotwin_bench.curation.video import decode_mp4  # noqa: E402
from egotwin_bench.evaluate.reference import load_clips  # noqa: E402
from egotwin_bench.evaluate.submission import read_meta, read_motion  # noqa: E402
from egotwin_bench.metrics.bootstrap import paired_difference  # noqa: E402
from egotwin_bench.metrics.view_consistency import head_camera_trajectory, view_errors  # noqa: E402
from egotwin_bench.skeleton import HEAD  # noqa: E402

ROWS: tuple[tuple[str, str], ...] = (
    ("vidmld", "VidMLD"), ("wo_mr", "w/o MR"), ("wo_im", "w/o IM"), ("wo_ad", "w/o AD"), ("egotwin", "EgoTwin"),
)
"""(run name, paper row) in the order of the paper's tables."""
METRICS: tuple[tuple[str, str, str], ...] = (
    ("I-FID", "I-FID", "down"), ("FVD", "FVD", "down"), ("CLIP-SIM", "CLIP-SIM", "up"),
    ("M-FID", "M-FID", "down"), ("R-Prec", "R-Prec", "up"), ("MM-Dist", "MM-Dist", "down"),
    ("pose_failures", "pose failures", "down"), ("TransErr", "TransErr", "down"), ("RotErr", "RotErr", "down"),
    ("HandScore", "HandScore", "up"),
)
"""(leaderboard.csv column, label, better direction) in the order of the paper's tables."""
PROBES: tuple[str, ...] = ("motion|video_clean", "motion|video_noised", "video|motion_clean", "video|motion_noised",
                           "motion|text", "motion|null_text", "video|text", "video|null_text",
                           "gaussian_motion", "gaussian_video")


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _cell(name: str) -> str:
    """A probe name as a Markdown table cell: its ``|`` (``motion|text``) escaped."""
    return name.replace("|", "\\|")


def leaderboard_tables(results: Path) -> tuple[str, dict]:
    """Markdown of the leaderboard rows (paper order, references last) and the raw rows."""
    table = pl.read_csv(results / "leaderboard.csv")
    present = [m for m in METRICS if m[0] in table.columns]
    rows = {f"{r['method']}": r for r in table.iter_rows(named=True)}
    order = [(f"{run}-t2vm", name) for run, name in ROWS] + [
        ("egotwin-tm2v", "EgoTwin TM2V"), ("egotwin-tv2m", "EgoTwin TV2M (video = reference)"),
        ("vidmld-tv2m", "VidMLD TV2M"),
        ("ground_truth", "reference (ground truth)"), ("shuffled_motion", "reference, motion shuffled")]
    head = "| row | n | " + " | ".join(f"{label} {'↓' if d == 'down' else '↑'}" for _, label, d in present) + " |"
    lines = [head, "|" + "---|" * (len(present) + 2)]
    for method, name in order:
        r = rows.get(method)
        if r is None:
            continue
        cells = []
        for key, _, _ in present:
            v, lo, hi = r.get(key), r.get(f"{key}_low"), r.get(f"{key}_high")
            if key == "pose_failures":
                cells.append(str(v))
                continue
            cells.append(_fmt(v) + (f" [{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else ""))
        lines.append(f"| {name} | {r.get('n_clips')} | " + " | ".join(cells) + " |")
    missing = [label for key, label, _ in METRICS if key not in table.columns]
    note = f"\nNot on the leaderboard (see `evaluate`'s skip reasons): {', '.join(missing)}.\n" if missing else ""
    return "\n".join(lines) + "\n" + note, rows


def probe_table(meta: Path) -> tuple[str, dict]:
    probes = {p.stem: json.loads(p.read_text()) for p in sorted(meta.glob("*.json")) if p.stem in dict(ROWS)}
    lines = ["| row | " + " | ".join(map(_cell, PROBES)) + " |", "|" + "---|" * (len(PROBES) + 1)]
    for run, name in ROWS:
        if run in probes:
            lines.append(f"| {name} | " + " | ".join(_fmt(probes[run].get(k), 4) for k in PROBES) + " |")
    diffs = [(name, probes[run]["differences"]) for run, name in ROWS if "differences" in probes.get(run, {})]
    if diffs:  # probes written since the per-clip intervals (egotwin_model.coupling.probe_differences)
        pairs = list(dict.fromkeys(k for _, d in diffs for k in d))
        lines += ["", "Relative difference with / without, per clip paired, 95 % bootstrap interval over clips:", "",
                  "| row | " + " | ".join(map(_cell, pairs)) + " |", "|" + "---|" * (len(pairs) + 1)]
        for name, d in diffs:
            cells = [f"{d[k]['relative']:+.1%} [{d[k]['relative_low']:+.1%}, {d[k]['relative_high']:+.1%}]"
                     if k in d else "—" for k in pairs]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", probes


def tv2m_trajectories(repro: Path) -> tuple[str, dict]:
    """TransErr / RotErr of each TV2M motion's head camera against the reference camera poses.

    The ground-truth submission (the clip's own motion: the upper bound) and the motion-shuffled
    one (another clip's motion: chance) are scored the same way; `paired` gives, per TV2M
    submission pair, the mean per-clip difference with a 95 % bootstrap interval over clips.
    """
    refs = {c.clip_id: c for c in load_clips(repro / "dataset", "test", with_video=False)}
    out: dict = {}
    per_clip: dict[str, dict[str, tuple[float, float]]] = {}
    subs = sorted((repro / "submissions").glob("*-tv2m")) + [
        repro / "submissions" / n for n in ("ground_truth", "shuffled_motion") if (repro / "submissions" / n).is_dir()]
    for sub in subs:
        meta = read_meta(sub)
        trans, rot = [], []
        for clip_id, ref in refs.items():
            npz = sub / f"{clip_id}.npz"
            if not npz.is_file():
                continue
            pos, rotm = read_motion(npz, meta.motion_format)
            e = view_errors(ref.camera_poses.astype(np.float64),
                            head_camera_trajectory(pos.astype(np.float64), rotm.astype(np.float64), ref.T_head_camera))
            trans.append(e.trans_err)
            rot.append(e.rot_err)
            per_clip.setdefault(sub.name, {})[clip_id] = (e.trans_err, e.rot_err)
        out[sub.name] = {"clips": len(trans), "trans_err_m": float(np.mean(trans)), "rot_err_rad": float(np.mean(rot)),
                         "trans_err_median_m": float(np.median(trans)), "rot_err_median_rad": float(np.median(rot))}
    lines = ["| submission | clips | TransErr mean (m) | median | RotErr mean (rad) | median |", "|---|---|---|---|---|---|"]
    for name, r in out.items():
        lines.append(f"| {name} | {r['clips']} | {r['trans_err_m']:.3f} | {r['trans_err_median_m']:.3f} | "
                     f"{r['rot_err_rad']:.3f} | {r['rot_err_median_rad']:.3f} |")
    tv2m = [n for n in per_clip if n.endswith("-tv2m")]
    paired = {}
    rng = np.random.default_rng(0)
    for i, a in enumerate(tv2m):
        for b in tv2m[i + 1:]:
            common = sorted(set(per_clip[a]) & set(per_clip[b]))
            if not common:
                continue
            x, y = (np.array([per_clip[s][c] for c in common]) for s in (a, b))  # (n, 2): trans, rot
            t, r = (paired_difference(x[:, k], y[:, k], rng, 2000) for k in (0, 1))
            paired[f"{a} - {b}"] = {"clips": len(common), "trans_err_m": t.value, "trans_err_ci": [t.low, t.high],
                                    "rot_err_rad": r.value, "rot_err_ci": [r.low, r.high]}
    if paired:
        lines += ["", "| paired difference (per clip, same clips) | clips | TransErr (m) [95 %] | RotErr (rad) [95 %] |",
                  "|---|---|---|---|"]
        for name, r in paired.items():
            lines.append(f"| {name} | {r['clips']} | {r['trans_err_m']:+.3f} [{r['trans_err_ci'][0]:+.3f}, "
                         f"{r['trans_err_ci'][1]:+.3f}] | {r['rot_err_rad']:+.3f} [{r['rot_err_ci'][0]:+.3f}, "
                         f"{r['rot_err_ci'][1]:+.3f}] |")
    return "\n".join(lines) + "\n", {"submissions": out, "paired": paired}


def training_curves(meta: Path, out: Path) -> None:
    logs = sorted(meta.glob("log-*.jsonl"))
    stages = ["video-vae", "vae", "t2m", "joint"]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, stage in zip(axes, stages):
        for path in logs:
            name = path.stem[len("log-"):]
            if not name.endswith(f"-{stage}") or (stage == "vae" and name.endswith("video-vae")):
                continue
            recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            steps = [r["step"] for r in recs]
            ax.plot(steps, [r["loss"] for r in recs], label=name[: -len(stage) - 1], lw=1)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("training loss")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)
    plt.close(fig)


def clip_figure(repro: Path, out: Path, n_clips: int = 3) -> None:
    """Frames and top-view head paths of `n_clips` test clips that every shown submission has."""
    subs = [("EgoTwin", repro / "submissions" / "egotwin-t2vm"), ("VidMLD", repro / "submissions" / "vidmld-t2vm")]
    subs = [(label, f) for label, f in subs if f.is_dir()]
    refs = [c for c in load_clips(repro / "dataset", "test", with_video=True)
            if all((f / f"{c.clip_id}.npz").is_file() for _, f in subs)][:n_clips]
    rows = [(ref, label, folder) for ref in refs for label, folder in [("reference", None)] + subs]
    frames_shown = (0, 10, 20, 30, 40)
    fig, axes = plt.subplots(len(rows), len(frames_shown) + 1, figsize=(2.2 * (len(frames_shown) + 1), 2.2 * len(rows)),
                             squeeze=False)
    for row, (ref, label, folder) in enumerate(rows):
        if folder is None:
            video, pos = decode_mp4(ref.video_mp4), ref.positions
        else:
            video = decode_mp4((folder / f"{ref.clip_id}.mp4").read_bytes())
            pos, _ = read_motion(folder / f"{ref.clip_id}.npz", read_meta(folder).motion_format)
        for k, f in enumerate(frames_shown):
            ax = axes[row, k]
            ax.imshow(video[f])
            ax.set_xticks([]), ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(f"{label}\n{ref.clip_id[-14:]}", fontsize=7)
            if row == 0:
                ax.set_title(f"frame {f}", fontsize=8)
        ax = axes[row, -1]
        head = pos[:, HEAD, :2] - pos[0, HEAD, :2]
        ref_head = ref.positions[:, HEAD, :2] - ref.positions[0, HEAD, :2]
        ax.plot(ref_head[:, 0], ref_head[:, 1], "k--", lw=1)
        ax.plot(head[:, 0], head[:, 1], lw=1.5)
        ax.set_aspect("equal", "datalim")
        ax.set_title("head path (m), top view; dashed: reference" if row == 0 else "", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle("T2VM on test clips (text + first frame + first pose -> video + motion)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "clips.png", dpi=70)
    plt.close(fig)


def device_time(meta: Path) -> tuple[str, float]:
    """The GPU steps' timings as a Markdown table, and the pipeline's wall time (s)."""
    path = meta / "timings.jsonl"
    if not path.is_file():
        return "", 0.0
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    total = sum(r["seconds"] for r in recs)
    # `reproduce_small.sh gpu` runs a phase's steps side by side (the motion VAEs, the t2m runs, the
    # joint runs, the sampling jobs, the probes) and the phases one after another: the pipeline's
    # wall time is the sum over phases of the longest step (a step resumed in a later chunk: its parts
    # added up)
    per_step: dict[str, float] = {}
    for r in recs:
        per_step[r["step"]] = per_step.get(r["step"], 0.0) + r["seconds"]
    phases: dict[str, float] = {}
    for step, seconds in per_step.items():
        name = step.split("/")[-1]
        phase = "sample" if name.startswith("sample-") else name
        phases[phase] = max(phases.get(phase, 0.0), seconds)
    wall = sum(phases.values())
    lines = ["| step | seconds | GPU MiB after |", "|---|---|---|"] + [
        f"| {r['step']} | {r['seconds']:.1f} | {r['gpu_mib_after']} |" for r in recs]
    return "\n".join(lines) + (f"\n\nPipeline wall time {wall:.0f} s (phases in order, the steps of a phase side"
                               f" by side); the steps' own times add up to {total:.0f} s.\n"), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repro", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--results", type=Path, default=None,
                        help="`evaluate` output folder with leaderboard.csv (default REPRO/results)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = args.repro / "meta"
    board, rows = leaderboard_tables(args.results or args.repro / "results")
    probes_md, probes = probe_table(meta)
    traj_md, traj = tv2m_trajectories(args.repro)
    time_md, wall = device_time(meta)
    training_curves(meta, args.out)
    clip_figure(args.repro, args.out)
    (args.out / "summary.md").write_text(
        "## Leaderboard (T2VM unless named; 95% intervals)\n\n" + board
        + "\n## Condition probes (held-out v-MSE, test split)\n\n" + probes_md
        + "\n## TV2M: generated head camera vs the reference camera (no pose estimator)\n\n" + traj_md
        + "\n## Device time\n\n" + time_md)
    (args.out / "results.json").write_text(json.dumps(
        {"leaderboard": rows, "probes": probes, "tv2m_trajectories": traj, "pipeline_wall_seconds": wall}, indent=2, default=str))
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
