"""`build-dataset` driver: sequences -> shards (Ray Data, one task per sequence) -> manifest,
splits and dataset card. Resumable and deterministic.

Output layout (docs/data_format.md): ``shards/clips-<sequence_id>.parquet``, ``report/<sequence_id>.json``,
``manifest.parquet``, ``splits.json``, ``dataset_card.{md,json}``.

Resume: each task writes its shard atomically, then its report (the commit marker). A rerun
skips a sequence whose report exists with the same config fingerprint (and, if ok, whose shard
exists); everything else is (re)done. Shard contents depend only on the sequence and the config
(H.264 encoding is single-threaded and deterministic), so a run killed at any moment and rerun
ends with the same dataset as an uninterrupted run. The split of every sequence is decided
from all sequences' metadata before processing, and the finalisation rewrites a shard whose
split column disagrees (e.g. after sequences were added).

Engines: "ray" (default) — `ray.init(address=...)`, local unless `--ray-address` or
`RAY_ADDRESS` names a cluster (then the dataset and output paths must be on storage every node
sees); "local" — the same tasks in this process, one after another (debugging, tiny runs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from egotwin_bench import __version__
from egotwin_bench.curation.card import card_dict, write_card
from egotwin_bench.curation.config import CurationConfig
from egotwin_bench.curation.sequence import SequenceReport, curate_sequence, shard_path
from egotwin_bench.curation.shards import HEAVY_COLUMNS, atomic_write_table, atomic_write_text, clip_schema
from egotwin_bench.curation.splits import SequenceKey, assign_splits
from egotwin_bench.nymeria.layout import LayoutError, find_sequences, open_sequence

SPLITS: tuple[str, ...] = ("train", "val", "test")


def report_path(out_dir: Path, sequence_id: str) -> Path:
    return Path(out_dir) / "report" / f"{sequence_id}.json"


def _sequence_id(seq_dir: Path) -> tuple[str, SequenceKey | None]:
    try:
        seq = open_sequence(seq_dir)
    except LayoutError:
        return seq_dir.name, None
    return seq.sequence_id, SequenceKey(seq.sequence_id, seq.subject_id, seq.location_id)


def remove_stale_temp_files(out_dir: Path) -> list[Path]:
    """Delete temp files a killed run left behind (``.<name>.tmp-<pid>``, see `atomic_write_table`).

    Only one build may write to an output folder at a time.
    """
    stale = [p for sub in ("", "shards", "report") for p in (Path(out_dir) / sub).glob(".*.tmp-*")]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _finished(out_dir: Path, sequence_id: str, fingerprint: str) -> dict | None:
    path = report_path(out_dir, sequence_id)
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if report.get("config_fingerprint") != fingerprint:
        return None
    if report.get("status") == "ok" and not shard_path(out_dir, sequence_id).is_file():
        return None
    return report


def process_one(seq_dir: str, out_dir: str, config: CurationConfig, split: str | None) -> dict:
    """One task: curate a sequence, write its shard and then its report; return the report."""
    report = curate_sequence(seq_dir, out_dir, config, split)
    d = dataclasses.asdict(report)
    atomic_write_text(json.dumps(d, indent=1), report_path(Path(out_dir), report.sequence_id))
    return d


def _run_local(tasks: list[dict], out_dir: Path, config: CurationConfig) -> Iterator[dict]:
    for t in tasks:
        yield process_one(t["seq_dir"], str(out_dir), config, t["split"] or None)


def _run_ray(tasks: list[dict], out_dir: Path, config: CurationConfig, workers: int, ray_address: str | None) -> Iterator[dict]:
    import ray

    if not ray.is_initialized():
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        kwargs = {"num_cpus": workers} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **kwargs)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # our own progress bar reports per sequence
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    out = str(out_dir)

    def task(row: dict) -> dict:
        report = process_one(row["seq_dir"], out, config, row["split"] or None)
        return {"report_json": json.dumps(report)}

    ds = ray.data.from_items(tasks, override_num_blocks=max(1, len(tasks)))
    ds = ds.map(task, num_cpus=1, compute=ray.data.TaskPoolStrategy(size=max(1, workers)))  # crashed workers are retried by Ray
    for row in ds.iter_rows():
        yield json.loads(row["report_json"])


def build_dataset(
    nymeria_root: str | Path,
    out_dir: str | Path,
    config: CurationConfig = CurationConfig(),
    workers: int = 1,
    limit: int | None = None,
    engine: str = "ray",
    ray_address: str | None = None,
    progress: Callable[[Iterator[dict], int], Iterator[dict]] | None = None,
) -> dict:
    """Curate every sequence under `nymeria_root` into `out_dir`; returns the dataset card dict.

    `progress(iterator, total)` wraps the stream of finished-sequence reports (e.g. tqdm).
    """
    out_dir = Path(out_dir)
    seq_dirs = find_sequences(nymeria_root)  # raises before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out_dir)
    if limit is not None:
        seq_dirs = seq_dirs[:limit]
    ids, keys = {}, []
    for d in seq_dirs:
        sid, key = _sequence_id(d)
        ids[d] = sid
        if key is not None:
            keys.append(key)
    if len(set(ids.values())) != len(ids):
        raise ValueError("two sequence folders resolve to the same sequence id; check their metadata.json")
    split_of = assign_splits(keys, config.splits)
    fingerprint = config.fingerprint()
    reports: dict[str, dict] = {}
    tasks = []
    for d in seq_dirs:
        done = _finished(out_dir, ids[d], fingerprint)
        if done is not None:
            reports[ids[d]] = done
        else:
            tasks.append({"seq_dir": str(d), "split": split_of.get(ids[d], "")})
    if tasks:
        stream = _run_local(tasks, out_dir, config) if engine == "local" else _run_ray(tasks, out_dir, config, workers, ray_address)
        if progress is not None:
            stream = progress(stream, len(tasks))
        for report in stream:
            reports[report["sequence_id"]] = report
    ordered = [reports[ids[d]] for d in seq_dirs if ids[d] in reports]
    return finalize(out_dir, ordered, split_of, config)


def _fix_split(path: Path, split: str) -> None:
    table = pq.read_table(path, schema=clip_schema())
    if table.num_rows and pc.all(pc.equal(table.column("split"), split)).as_py():
        return
    idx = table.schema.get_field_index("split")
    table = table.set_column(idx, "split", pa.array([split] * table.num_rows, pa.string()))
    atomic_write_table(table, path)


def finalize(out_dir: Path, reports: list[dict], split_of: dict[str, str], config: CurationConfig) -> dict:
    """Split columns, `manifest.parquet`, `splits.json` and the dataset card from the reports."""
    parts = []
    splits: dict[str, list[str]] = {k: [] for k in SPLITS}
    light = [f.name for f in clip_schema() if f.name not in HEAVY_COLUMNS]
    for r in reports:
        if r.get("split") != split_of.get(r["sequence_id"]):
            r["split"] = split_of.get(r["sequence_id"])
            atomic_write_text(json.dumps(r, indent=1), report_path(out_dir, r["sequence_id"]))
        if r["status"] != "ok":
            continue
        path = shard_path(out_dir, r["sequence_id"])
        _fix_split(path, r["split"])
        t = pq.read_table(path, columns=light)
        t = t.append_column("shard", pa.array([str(path.relative_to(out_dir))] * t.num_rows, pa.string()))
        t = t.append_column("row", pa.array(range(t.num_rows), pa.int32()))
        parts.append(t)
        splits[r["split"]].extend(t.column("clip_id").to_pylist())
    if parts:
        manifest = pa.concat_tables(parts)
    else:
        schema = pa.schema([clip_schema().field(c) for c in light] + [pa.field("shard", pa.string()), pa.field("row", pa.int32())])
        manifest = schema.empty_table()
    atomic_write_table(manifest.replace_schema_metadata(clip_schema().metadata), out_dir / "manifest.parquet")
    atomic_write_text(json.dumps({k: sorted(v) for k, v in splits.items()}, indent=1), out_dir / "splits.json")
    card = card_dict(reports, splits, config.to_dict(), __version__)
    write_card(out_dir, card)
    return card


__all__ = ["build_dataset", "finalize", "process_one", "report_path", "SequenceReport"]
