"""`pipelines/reproduce_small.sh weights`: the runnable copy of a run folder, brought back from a GPU
host in tar streams a device call can carry (WEIGHTS_PART all | rest | joint)."""
from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "pipelines" / "reproduce_small.sh"
RUN_FILES = ["run.json", "encoders/vae/config.json", "encoders/tokenizer/tokenizer.json",
             "vae/model.safetensors", "vae/latent_stats.json", "joint/model.safetensors",
             "cache/manifest.json", "cache/motion_stats.safetensors", "cache/null_text.safetensors"]
LEFT_BEHIND = ["cache/clips/train/0000.safetensors", "t2m/model.safetensors"]


def _run(tmp_path: Path, part: str | None) -> tuple[subprocess.CompletedProcess, list[str]]:
    runs, out = tmp_path / "runs", tmp_path / f"out-{part}"
    for rel in RUN_FILES + LEFT_BEHIND:
        (runs / "egotwin" / rel).parent.mkdir(parents=True, exist_ok=True)
        (runs / "egotwin" / rel).write_bytes(os.urandom(64))
    env = {**os.environ, "RUNS": str(runs), "OUT": str(out), "PY": "true"}  # PY: no GPU-host install
    if part is not None:
        env["WEIGHTS_PART"] = part
    proc = subprocess.run(["bash", str(SCRIPT), "weights"], cwd=REPO, env=env, capture_output=True, text=True)
    names: list[str] = []
    parts = sorted(out.glob("weights.tgz.part-*"))
    if parts:
        (tmp_path / "whole.tgz").write_bytes(b"".join(p.read_bytes() for p in parts))
        with tarfile.open(tmp_path / "whole.tgz") as tar:
            names = sorted(m.name for m in tar.getmembers() if m.isfile())
    return proc, names


@pytest.mark.parametrize("part, expected", [
    (None, RUN_FILES),
    ("rest", [f for f in RUN_FILES if not f.startswith("joint/")]),
    ("joint", ["joint/model.safetensors"]),
])
def test_weights_parts_hold_the_run_folder_and_nothing_else(tmp_path: Path, part, expected) -> None:
    proc, names = _run(tmp_path, part)
    assert proc.returncode == 0, proc.stderr
    assert names == sorted(f"egotwin/{f}" for f in expected)


def test_weights_rejects_an_unknown_part(tmp_path: Path) -> None:
    proc, names = _run(tmp_path, "video")
    assert proc.returncode == 2 and "WEIGHTS_PART is all, rest or joint" in proc.stderr
    assert names == []
