"""How reruns of `build-dataset` treat earlier output: stale shards, split rewrites, retried
errors, crashed Ray workers; plus the command line. On copies of the tiny synthetic sequence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from egotwin_bench.curation import pipeline
from egotwin_bench.curation.alignment import AlignmentConfig
from egotwin_bench.curation.config import CurationConfig
from egotwin_bench.curation.pipeline import build_dataset, process_one
from egotwin_bench.curation.splits import SequenceKey, SplitConfig, assign_splits
from tests.fixtures_dataset import TinySequence, copy_sequence

SEQUENCES = ("a", "b", "c")


def _root(tiny: TinySequence, tmp_path: Path, names: tuple[str, ...] = SEQUENCES) -> Path:
    """Copies of the tiny sequence with their own ids, subjects and locations."""
    root = tmp_path / "nymeria"
    for name in names:
        copy_sequence(tiny, root, name, subject_id=f"subject_{name}", location_id=f"place_{name}")
    return root


class Counter:
    """A `progress` callback recording which sequences a run processed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, stream, total):
        for report in stream:
            self.seen.append(report["sequence_id"])
            yield report


def _shards(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "shards").glob("*.parquet"))


def test_limit_and_skips_leave_no_stale_shards(tiny_sequence, tmp_path):
    import polars as pl

    root, out = _root(tiny_sequence, tmp_path, ("a", "b")), tmp_path / "out"
    build_dataset(root, out, CurationConfig(), engine="local")
    assert _shards(out) == ["clips-a.parquet", "clips-b.parquet"]
    build_dataset(root, out, CurationConfig(), engine="local", limit=1)  # b is outside the run now
    assert _shards(out) == ["clips-a.parquet"] and sorted(p.name for p in (out / "report").iterdir()) == ["a.json"]
    manifest = pq.read_table(out / "manifest.parquet")
    assert pl.read_parquet(out / "shards" / "*.parquet").height == manifest.num_rows == 3
    assert set(manifest.column("sequence_id").to_pylist()) == {"a"}
    # A config under which the sequence is skipped: its task removes the shard at once ...
    strict = CurationConfig(alignment=AlignmentConfig(max_residual_m=1e-12))
    report = process_one(str(root / "a"), str(out), strict, "train")
    assert report["reason"].startswith("no_clips:") and "'alignment_residual': 3" in report["reason"]
    assert _shards(out) == []
    # ... and the finalisation leaves a consistent, empty dataset.
    card = build_dataset(root, out, strict, engine="local", limit=1)
    assert card["clips"]["total"] == 0 and pq.read_table(out / "manifest.parquet").num_rows == 0


def test_split_changes_rewrite_only_the_shards_concerned(tiny_sequence, tmp_path, monkeypatch):
    root, out = _root(tiny_sequence, tmp_path), tmp_path / "out"
    keys = [SequenceKey(n, f"subject_{n}", f"place_{n}") for n in SEQUENCES]
    before = assign_splits(keys, SplitConfig(seed=0))
    seed = next(s for s in range(1, 100) if assign_splits(keys, SplitConfig(seed=s)) != before)
    after = assign_splits(keys, SplitConfig(seed=seed))
    build_dataset(root, out, CurationConfig(), engine="local")

    reads: list[tuple[str, tuple | None]] = []
    writes: list[str] = []
    real_read, real_write = pq.read_table, pipeline.atomic_write_table

    def read_table(path, *args, columns=None, **kwargs):
        reads.append((Path(path).name, None if columns is None else tuple(columns)))
        return real_read(path, *args, columns=columns, **kwargs)

    def atomic_write_table(table, path, *args, **kwargs):
        writes.append(Path(path).name)
        return real_write(table, path, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", read_table)
    monkeypatch.setattr(pipeline, "atomic_write_table", atomic_write_table)
    progress = Counter()
    build_dataset(root, out, CurationConfig(), engine="local", progress=progress)  # nothing changed
    assert progress.seen == [] and writes == ["manifest.parquet"]
    assert all(cols is not None and "video_mp4" not in cols for _, cols in reads), reads
    reads.clear(), writes.clear()
    build_dataset(root, out, CurationConfig(splits=SplitConfig(seed=seed)), engine="local", progress=progress)
    changed = sorted(f"clips-{n}.parquet" for n in SEQUENCES if before[n] != after[n])
    assert progress.seen == [] and sorted(w for w in writes if w.startswith("clips-")) == changed
    assert sorted({name for name, cols in reads if cols is None}) == changed  # full reads only to rewrite
    for n in SEQUENCES:
        assert set(real_read(out / "shards" / f"clips-{n}.parquet", columns=["split"]).column(0).to_pylist()) == {after[n]}


def _rewrite_report(out: Path, sequence_id: str, **changes) -> None:
    path = out / "report" / f"{sequence_id}.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_error_reports_are_retried_and_deterministic_skips_are_not(tiny_sequence, tmp_path):
    root, out = _root(tiny_sequence, tmp_path, ("a",)), tmp_path / "out"
    build_dataset(root, out, CurationConfig(), engine="local")
    progress = Counter()
    _rewrite_report(out, "a", status="skipped", reason="error: MemoryError: transient", clips=0)
    card = build_dataset(root, out, CurationConfig(), engine="local", progress=progress)
    assert progress.seen == ["a"] and card["sequences"]["ok"] == 1
    _rewrite_report(out, "a", status="skipped", reason="no_narration: no narration/atomic_action.csv", clips=0)
    card = build_dataset(root, out, CurationConfig(), engine="local", progress=progress)
    assert progress.seen == ["a"] and card["skip_reasons"] == {"no_narration": 1}
    assert _shards(out) == []  # the shard of a sequence that is no longer ok is gone


def test_local_engine_warns_that_workers_do_not_apply(tiny_sequence, tmp_path):
    root = _root(tiny_sequence, tmp_path, ("a",))
    with pytest.warns(UserWarning, match="ignored by the local engine"):
        build_dataset(root, tmp_path / "out", CurationConfig(), workers=2, engine="local")
    with pytest.raises(ValueError, match="engine must be one of"):
        build_dataset(root, tmp_path / "out", CurationConfig(), engine="spark")


def test_a_crashing_ray_worker_becomes_an_error_report(tiny_sequence, tmp_path, monkeypatch, ray_session):
    """A task that kills its worker on every attempt ends as a skipped `error:` report; the
    other sequences finish, and the next run retries it."""
    root, out = _root(tiny_sequence, tmp_path, ("a", "b")), tmp_path / "out"
    real = pipeline.process_one

    def crash_on_b(seq_dir, out_dir, config, split):
        if Path(seq_dir).name == "b":
            os._exit(1)  # what a segfault in native code looks like to Ray
        return real(seq_dir, out_dir, config, split)

    monkeypatch.setattr(pipeline, "process_one", crash_on_b)
    monkeypatch.setattr(pipeline, "RAY_TASK_MAX_RETRIES", 1)
    card = build_dataset(root, out, CurationConfig(), workers=2, engine="ray")
    report = json.loads((out / "report" / "b.json").read_text())
    assert report["status"] == "skipped" and report["reason"].startswith("error: worker crashed"), report["reason"]
    assert "up to 2 attempts" in report["reason"]
    assert card["skip_reasons"] == {"error": 1} and card["sequences"]["ok"] == 1 and _shards(out) == ["clips-a.parquet"]
    monkeypatch.undo()
    progress = Counter()
    card = build_dataset(root, out, CurationConfig(), engine="local", progress=progress)
    assert progress.seen == ["b"] and card["sequences"]["ok"] == 2


def test_build_dataset_help_shows_its_defaults():
    from typer.testing import CliRunner

    from egotwin_bench.cli import app

    result = CliRunner().invoke(app, ["build-dataset", "--help"], env={"COLUMNS": "250", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    c = CurationConfig()
    for text in (f"[default: {c.splits.seed}]", f"[default: {c.splits.test_fraction}]", f"[default: {c.windows.narration_file}]",
                 f"[default: '{c.windows.text_column}']", f"[default: {c.alignment.max_residual_m}]",
                 f"[default: {c.rgb_source}]", "its [run] table is ignored", "change with --limit",
                 "--engine local ignores it"):
        assert text in " ".join(result.output.split()), text
