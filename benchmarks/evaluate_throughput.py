"""Evaluation throughput: clips/s of each camera-pose backend (and of the other per-clip stages).

    python benchmarks/evaluate_throughput.py [--clips 6] [--droid-weights droid.pth] [--droid-repo DROID-SLAM]

Renders `--clips` noise-free 41-frame 480x480 walks through the textured room of
`egotwin_bench.estimators.known_scenes` (rendering is not timed), then times, per clip:
submission validation of the MP4 (decode + checks), video decoding, and every pose backend that
can run here (`builtin` always; `droid` with a built DROID-SLAM checkout (--droid-repo or
$DROID_SLAM_DIR), a GPU and --droid-weights).
For each backend it also reports the view-consistency error against the true path, so speed is
never bought with accuracy. Prints ONE JSON line; a backend that cannot run carries its reason.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=6, help="Number of rendered clips.")
    parser.add_argument("--droid-weights", type=Path, default=None, help="droid.pth for the droid backend.")
    parser.add_argument("--droid-repo", type=Path, default=None, help="DROID-SLAM checkout (default $DROID_SLAM_DIR).")
    args = parser.parse_args()

    from egotwin_bench.curation.video import decode_mp4, encode_mp4
    from egotwin_bench.estimators import ESTIMATORS, make_estimator
    from egotwin_bench.estimators.base import default_intrinsics
    from egotwin_bench.estimators.known_scenes import camera_path, render_room
    from egotwin_bench.evaluate.submission import check_video
    from egotwin_bench.metrics.view_consistency import relative_to_first, view_errors

    K = default_intrinsics()
    rng = np.random.default_rng(0)
    truths = [camera_path("walk", heading=float(rng.uniform(0, 2 * np.pi)), look=float(rng.uniform(-0.8, 0.8)),
                          turn=float(rng.uniform(-0.3, 0.3))) for _ in range(args.clips)]
    videos = [encode_mp4(render_room(T, K, render_scale=0.5)) for T in truths]

    result: dict = {"benchmark": "evaluate_throughput", "clips": args.clips, "frames_per_clip": 41,
                    "size": 480}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, data in enumerate(videos):
            paths.append(Path(tmp) / f"clip{i}.mp4")
            paths[-1].write_bytes(data)
        t = time.perf_counter()
        problems = [check_video(p) for p in paths]
        result["validate_clips_per_s"] = args.clips / (time.perf_counter() - t)
        assert not any(problems), problems
    t = time.perf_counter()
    frames = [decode_mp4(v) for v in videos]
    result["decode_clips_per_s"] = args.clips / (time.perf_counter() - t)

    for name in ESTIMATORS:
        estimator = make_estimator(name, args.droid_weights, args.droid_repo)
        reason = estimator.unavailable_reason()
        if reason is not None:
            result[name] = {"skipped": reason}
            continue
        estimator.estimate(frames[0], K)  # warm-up (JIT, CUDA context, caches)
        t = time.perf_counter()
        poses = [estimator.estimate(f, K) for f in frames]
        seconds = time.perf_counter() - t
        errors = [view_errors(p, T) for p, T in zip(poses, truths)]
        travelled = np.mean([np.linalg.norm(relative_to_first(T)[1:, :3, 3], axis=1).mean() for T in truths])
        result[name] = {
            "clips_per_s": args.clips / seconds,
            "seconds_per_clip": seconds / args.clips,
            "trans_err_m": float(np.mean([e.trans_err for e in errors])),
            "trans_err_over_mean_displacement": float(np.mean([e.trans_err for e in errors]) / travelled),
            "rot_err_deg": float(np.rad2deg(np.mean([e.rot_err for e in errors]))),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
