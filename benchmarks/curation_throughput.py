"""Curation throughput and memory: clips/s, pipeline wall time / pure decode time, peak RSS.

    python benchmarks/curation_throughput.py [--data NYMERIA_ROOT] [--keep DIR] [--config TOML]
        [--workers 1 2] [--vrs REAL.vrs]

Without --data it first writes a synthetic dataset (`egotwin-bench make-synthetic`). The
reference is the time to only decode (the toolkit's RGB reader: PyAV + the BT.601 conversion to
RGB arrays, or the VRS reader) the same RGB frames the pipeline uses, sequentially in one
process; the goal is pipeline / decode <= 1.3. `--config` takes the curation tables of
pipelines/curation.toml (its [run] table is ignored), e.g. a `[video]` preset to compare. Runs: the in-process
engine (`local`, no Ray), then Ray with each `--workers` count. Ray start-up is timed separately
(`ray_init_s`, paid once per run, not per sequence); `*_task_s_sum` adds up the per-sequence task
times of the reports. Memory: `local_peak_rss_gib` is this process's peak after the in-process
run (imports + every sequence in turn: one worker's footprint), `*_task_peak_rss_gib` the largest
`peak_rss_gib` of the reports (the process that ran each task; for Ray, the workers). `--workers`
with no value runs the in-process engine only. `local_cpu_ratio_to_decode` compares CPU times
(all threads of this process) instead of wall times: on a shared machine the wall ratio mostly
measures the other tenants, and the encoder's helper thread finds no free core.

`--vrs FILE` (in-process only) times the VRS path on a real Aria recording: every sequence's RGB
frames are decoded from FILE's camera-rgb JPEG records (frame i = record i mod the record count:
the real files hold 4-8 frames) with FILE's real FISHEYE624 calibration (undistorted from its
1408² frames), on the sequences' own timing; Xsens, MPS and narrations stay the sequences'. The
reference decodes the same records the same way. Prints ONE JSON line (with the 1-minute load
average: the machine may be shared).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
import ray

from egotwin_bench.curation import sequence
from egotwin_bench.curation.config import CurationConfig, load_config_file
from egotwin_bench.curation.pipeline import build_dataset
from egotwin_bench.curation.sequence import video_frame_indices
from egotwin_bench.nymeria.layout import find_sequences, open_sequence
from egotwin_bench.nymeria.rgb import RgbStream, open_rgb_stream
from egotwin_bench.nymeria.vrs import open_vrs_rgb


def vrs_backed(vrs: Path) -> Callable:
    """An `open_rgb_stream` whose frames are decoded from the real VRS file (see the module doc)."""
    real = open_vrs_rgb(vrs)
    records = len(real.device_times_ns)

    def read(indices):
        for i in indices:
            (_, frame), = real.iter_frames([int(i) % records])
            yield int(i), frame

    def open_stream(seq, prefer: str = "vrs") -> RgbStream:
        own = open_rgb_stream(seq, prefer)
        return RgbStream(real.calibration, own.device_times_ns, own.clock, read, "vrs")

    return open_stream


def decode_seconds(data: Path, dataset: Path, open_rgb: Callable) -> tuple[float, float, int]:
    """Wall and CPU time to decode exactly the RGB frames the built clips use, per sequence, in
    order, and their number."""
    manifest = pq.read_table(dataset / "manifest.parquet", columns=["sequence_id", "t0_timecode_ns"]).to_pylist()
    by_seq: dict[str, list[int]] = {}
    for r in manifest:
        by_seq.setdefault(r["sequence_id"], []).append(r["t0_timecode_ns"])
    total, cpu, frames = 0.0, 0.0, 0
    for d in find_sequences(data):
        seq = open_sequence(d)
        if seq.sequence_id not in by_seq:
            continue
        t, c = time.perf_counter(), time.process_time()
        rgb = open_rgb(seq)
        idx = sorted({int(i) for t0 in by_seq[seq.sequence_id] for i in video_frame_indices(rgb, t0)[0]})
        for _ in rgb.iter_frames(idx):
            frames += 1
        total += time.perf_counter() - t
        cpu += time.process_time() - c
    return total, cpu, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="Nymeria-format root (default: make a synthetic one)")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp dir)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2],
                        help="Ray worker counts to run after the in-process run (none: in-process only)")
    parser.add_argument("--config", type=Path, default=None, help="TOML of CurationConfig tables (default: defaults)")
    parser.add_argument("--vrs", type=Path, default=None, help="decode every frame from this real Aria VRS (in-process only)")
    args = parser.parse_args()

    if args.vrs is not None:
        if args.workers:
            parser.error("--vrs runs in-process only: pass --workers without values")
        open_rgb = vrs_backed(args.vrs)
        sequence.open_rgb_stream = open_rgb  # what the curation of a sequence opens
    else:
        open_rgb = open_rgb_stream

    config = CurationConfig() if args.config is None else load_config_file(args.config)[0]

    work = args.keep or Path(tempfile.mkdtemp(prefix="curation_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        data = work / "nymeria"
        if not data.exists():
            subprocess.run([sys.executable, "-m", "egotwin_bench.cli", "make-synthetic", "--out", str(data)], check=True,
                           stdout=subprocess.DEVNULL)
    result: dict = {"benchmark": "curation_throughput", "data": str(data), "video": dataclasses.asdict(config.video),
                    "rgb": "exported MP4" if args.vrs is None else f"real VRS records of {args.vrs}"}

    def run(name: str, engine: str, workers: int) -> Path:
        out = work / f"out_{name}"
        shutil.rmtree(out, ignore_errors=True)  # a fresh build, not a resume
        t, cpu = time.perf_counter(), time.process_time()
        card = build_dataset(data, out, config, workers=workers, engine=engine)
        wall = time.perf_counter() - t
        if engine == "local":  # CPU time of every thread of this process (Ray's work is in its workers)
            result[f"{name}_cpu_s"] = round(time.process_time() - cpu, 2)
        reports = [json.loads(p.read_text()) for p in (out / "report").glob("*.json")]
        result[f"{name}_wall_s"] = round(wall, 2)
        result[f"{name}_clips_per_s"] = round(card["clips"]["total"] / wall, 3)
        result[f"{name}_task_s_sum"] = round(sum(r["seconds"] for r in reports), 2)
        result[f"{name}_task_peak_rss_gib"] = max(r.get("peak_rss_gib", 0.0) for r in reports)
        result["clips"] = card["clips"]["total"]
        result["sequences"] = card["sequences"]["total"]
        return out

    dataset = run("local", "local", 1)  # in-process, no Ray: the per-sequence work alone
    # Peak resident memory of this process so far: imports + curating every sequence in turn, the
    # footprint of one worker.
    result["local_peak_rss_gib"] = round(sequence.peak_rss_gib(), 3)
    if args.workers:
        t = time.perf_counter()
        try:
            ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 — e.g. the raylet timing out on a loaded machine: keep the rest
            result["ray_error"] = f"{type(exc).__name__}: {exc}"
        else:
            result["ray_init_s"] = round(time.perf_counter() - t, 2)
            for w in args.workers:
                run(f"w{w}", "ray", w)
            ray.shutdown()
    decode_s, decode_cpu_s, frames = decode_seconds(data, dataset, open_rgb)
    result["decode_s"] = round(decode_s, 2)
    result["decode_cpu_s"] = round(decode_cpu_s, 2)
    result["decoded_frames"] = frames
    for name in ["local"] + [f"w{w}" for w in args.workers if f"w{w}_wall_s" in result]:
        result[f"{name}_ratio_to_decode"] = round(result[f"{name}_wall_s"] / decode_s, 3)
    # On a loaded machine wall times mostly measure the other tenants; CPU time does not.
    result["local_cpu_ratio_to_decode"] = round(result["local_cpu_s"] / decode_cpu_s, 3)
    result["goal"] = "ratio_to_decode <= 1.3"
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
