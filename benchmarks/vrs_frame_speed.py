"""Per-frame RGB read + undistort time on a real Aria VRS beside the exported-MP4 path.

    PYTHONPATH=. python benchmarks/vrs_frame_speed.py [--vrs ../shared/data/aria/timecode_sequence.vrs]
    (default: $EGOTWIN_ARIA_DATA/timecode_sequence.vrs when set)

Aria VRS stores camera-rgb frames as independent JPEG images, so a clip needs only its own 41
frames decoded (random access), while H.264 must decode from the previous keyframe. Reference:
the same frames written as an exported recording (`rgb.mp4`, the toolkit's writer) and read
back with the toolkit's reader. Prints one JSON line: ms per frame for read, undistort (the
cached 480² remap table) and both, for each path, and the VRS / MP4 ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from egotwin_bench.curation.undistort import remap_table, undistort
from egotwin_bench.nymeria.exported_recording import ExportedRecording, write_exported_recording
from egotwin_bench.nymeria.vrs import open_vrs_rgb

DEFAULT_VRS = Path(os.environ.get("EGOTWIN_ARIA_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "aria") \
    / "timecode_sequence.vrs"
"""The real recording of ``../shared/data/aria`` (or of ``$EGOTWIN_ARIA_DATA``, as the tests)."""


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vrs", type=Path, default=DEFAULT_VRS)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    rgb = open_vrs_rgb(args.vrs)
    n = len(rgb.device_times_ns)
    idx = list(range(n))
    table = remap_table(rgb.calibration)
    frames = [f for _, f in rgb.iter_frames(idx)]
    with tempfile.TemporaryDirectory() as tmp:
        write_exported_recording(tmp, frames, rgb.device_times_ns.tolist(), rgb.clock.device_to_timecode(rgb.device_times_ns).tolist(),
                                 rgb.calibration, fps=30)
        rec = ExportedRecording.open(tmp)
        res: dict = {"benchmark": "vrs_frame_speed", "vrs": str(args.vrs), "frames": n,
                     "size": list(map(int, rgb.calibration.get_image_size()))}
        for name, read in (("vrs", lambda: [f for _, f in rgb.iter_frames(idx)]),
                           ("mp4", lambda: [f for _, f in rec.iter_frames(idx)])):
            t_read = _time(read, args.repeats) / n
            t_both = _time(lambda: [undistort(f, table) for f in read()], args.repeats) / n
            res[f"{name}_read_ms"] = round(t_read * 1e3, 2)
            res[f"{name}_read_undistort_ms"] = round(t_both * 1e3, 2)
        res["undistort_ms"] = round(_time(lambda: [undistort(f, table) for f in frames], args.repeats) / n * 1e3, 2)
        res["vrs_over_mp4_read"] = round(res["vrs_read_ms"] / res["mp4_read_ms"], 3)
        # A clip needs 41 frames: VRS decodes exactly those; MP4 decodes forward from the file's
        # start (or a keyframe), i.e. every frame before the last one needed.
        res["note"] = "VRS: random access per JPEG frame; MP4: sequential decode"
    print(json.dumps(res))


if __name__ == "__main__":
    main()
