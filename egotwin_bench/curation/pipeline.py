"""`build-dataset` driver: sequences -> shards (Ray Data, one task per sequence) -> manifest,
splits and dataset card. Resumable and deterministic.

Output layout (docs/data_format.md): ``shards/clips-<sequence_id>.parquet``, ``report/<sequence_id>.json``,
``manifest.parquet``, ``splits.json``, ``dataset_card.{md,json}``.

Resume: each task writes its shard atomically, then its report (the commit marker). A rerun
skips a sequence whose report exists with the same config fingerprint (config, toolkit version,
schema version) and, if ok, whose shard exists; a report skipped with ``error:`` (an
unexpected exception, a crashed worker: possibly transient) is retried. Everything else is
(re)done. Shard contents depend only on the sequence and the config (H.264 encoding is
single-threaded and deterministic), so a run killed at any moment and rerun ends with the same
dataset as an uninterrupted run. The split of every sequence is decided from the metadata of
all sequences of the run (after `--limit`) before processing, and the finalisation rewrites a
shard whose split column disagrees (e.g. after sequences were added). The output folder then
mirrors the run: shards that no ok report of the run names and reports of sequences outside
the run (an earlier, larger `--limit`; removed input folders) are deleted, so plain
``read_parquet(out/shards)`` reads exactly the clips of the manifest.

Engines: "ray" (default) — `ray.init(address=...)`, local unless `--ray-address` or
`RAY_ADDRESS` names a cluster (then the dataset and output paths must be on storage every node
sees); a task whose worker dies (native crash, OOM kill) is retried `RAY_TASK_MAX_RETRIES`
times, then its sequence ends as a skipped ``error: worker crashed ...`` report and the run goes
on. "local" — the same tasks in this process, one after another (debugging, tiny runs;
`workers` does not apply).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from egotwin_bench import __version__
from egotwin_bench.curation.card import card_dict, write_card
from egotwin_bench.curation.config import CurationConfig
from egotwin_bench.curation.sequence import SequenceReport, curate_sequence, shard_path
from egotwin_bench.curation.shards import HEAVY_COLUMNS, atomic_write_table, atomic_write_text, clip_schema
from egotwin_bench.curation.splits import SequenceKey, assign_splits
from egotwin_bench.nymeria.layout import LayoutError, find_sequences, open_sequence

SPLITS: tuple[str, ...] = ("train", "val", "test")
ENGINES: tuple[str, ...] = ("ray", "local")
RAY_TASK_MAX_RETRIES: int = 2
"""Ray retries of a sequence task whose worker process died (3 attempts in all)."""
RETRIED_REASON: str = "error"
"""Reports skipped with this reason code are redone by the next run (possibly transient)."""


def report_path(out_dir: Path, sequence_id: str) -> Path:
    return Path(out_dir) / "report" / f"{sequence_id}.json"


def write_report(out_dir: str | Path, report: dict) -> None:
    """`report/<sequence_id>.json`, atomically and durably (the commit marker of a sequence)."""
    atomic_write_text(json.dumps(report, indent=1), report_path(Path(out_dir), report["sequence_id"]))


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
    if report.get("status") != "ok" and str(report.get("reason", "")).startswith(RETRIED_REASON + ":"):
        return None
    return report


def process_one(seq_dir: str, out_dir: str, config: CurationConfig, split: str | None) -> dict:
    """One task: curate a sequence, write its shard and then its report; return the report."""
    report = dataclasses.asdict(curate_sequence(seq_dir, out_dir, config, split))
    write_report(out_dir, report)
    return report


def _run_local(tasks: list[dict], out_dir: Path, config: CurationConfig) -> Iterator[dict]:
    for t in tasks:
        yield process_one(t["seq_dir"], str(out_dir), config, t["split"] or None)


def crashed_report(task: dict, out_dir: Path, config: CurationConfig, attempts: int) -> dict:
    """Skipped ``error:`` report (written, shard removed) of a task Ray gave up on."""
    report = dataclasses.asdict(SequenceReport(
        sequence_id=task["sequence_id"], subject_id=task["subject_id"], location_id=task["location_id"],
        split=task["split"] or None, status="skipped", config_fingerprint=config.fingerprint(),
        reason=f"{RETRIED_REASON}: worker crashed, was lost or failed; Ray gave up after up to {attempts} attempts "
               "(a native crash, an OOM kill, a lost node, or an exception outside curate_sequence such as a "
               "failed report write; see the Ray worker logs); the next run retries it",
    ))
    shard_path(out_dir, task["sequence_id"]).unlink(missing_ok=True)
    write_report(out_dir, report)
    return report


def _run_ray(tasks: list[dict], out_dir: Path, config: CurationConfig, workers: int, ray_address: str | None) -> Iterator[dict]:
    import ray  # lazy: ray (~3 s to import) only for --engine ray

    if not ray.is_initialized():
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        kwargs = {"num_cpus": workers} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **kwargs)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # our own progress bar reports per sequence
    out = str(out_dir)

    def task(row: dict) -> dict:
        report = process_one(row["seq_dir"], out, config, row["split"] or None)
        return {"report_json": json.dumps(report)}

    ds = ray.data.from_items(tasks, override_num_blocks=max(1, len(tasks)))  # one block (task) per sequence
    ctx = ds.context  # this dataset's own copy of the DataContext; the global one is left alone
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    ctx.max_errored_blocks = -1  # a sequence whose task fails for good is reported below, the others go on
    with warnings.catch_warnings():
        # Ray Data has no named parameter for task retries yet; `max_retries` goes through
        # `**ray_remote_args`, which Ray 2.60 flags as deprecated (removal announced for 2.64).
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds = ds.map(task, num_cpus=1, max_retries=RAY_TASK_MAX_RETRIES,
                    compute=ray.data.TaskPoolStrategy(size=max(1, min(workers, len(tasks)))))
    seen: set[str] = set()
    for row in ds.iter_rows():
        report = json.loads(row["report_json"])
        seen.add(report["sequence_id"])
        yield report
    for t in tasks:
        if t["sequence_id"] not in seen:
            yield crashed_report(t, out_dir, config, attempts=1 + RAY_TASK_MAX_RETRIES)


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

    `limit` keeps the first N sequence folders (sorted by name); the train/val/test split is
    computed over the sequences of the run, so it depends on `limit`. `workers` is the number of
    concurrent Ray tasks (engine "ray"; the "local" engine runs one sequence at a time and warns
    if `workers` > 1). `progress(iterator, total)` wraps the stream of finished-sequence reports
    (e.g. tqdm).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "local" and workers > 1:
        warnings.warn(f"workers={workers} is ignored by the local engine (one sequence at a time, in this "
                      "process); use engine='ray' for parallel sequences", stacklevel=2)
    out_dir = Path(out_dir)
    seq_dirs = find_sequences(nymeria_root)  # raises before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out_dir)
    if limit is not None:
        seq_dirs = seq_dirs[:limit]
    ids: dict[Path, str] = {}
    keys: dict[str, SequenceKey] = {}
    for d in seq_dirs:
        sid, key = _sequence_id(d)
        ids[d] = sid
        if key is not None:
            keys[sid] = key
    if len(set(ids.values())) != len(ids):
        raise ValueError("two sequence folders resolve to the same sequence id; check their metadata.json")
    split_of = assign_splits(list(keys.values()), config.splits)
    fingerprint = config.fingerprint()
    reports: dict[str, dict] = {}
    tasks = []
    for d in seq_dirs:
        done = _finished(out_dir, ids[d], fingerprint)
        if done is not None:
            reports[ids[d]] = done
        else:
            key = keys.get(ids[d], SequenceKey(ids[d], "unknown", "unknown"))
            tasks.append({"seq_dir": str(d), "split": split_of.get(ids[d], ""), "sequence_id": ids[d],
                          "subject_id": key.subject_id, "location_id": key.location_id})
    if tasks:
        stream = _run_local(tasks, out_dir, config) if engine == "local" else _run_ray(tasks, out_dir, config, workers, ray_address)
        if progress is not None:
            stream = progress(stream, len(tasks))
        for report in stream:
            reports[report["sequence_id"]] = report
    ordered = [reports[ids[d]] for d in seq_dirs if ids[d] in reports]
    return finalize(out_dir, ordered, split_of, config)


def _fix_split(path: Path, split: str) -> None:
    """Rewrite the shard's `split` column if it is not `split` everywhere (reads only that
    column unless a rewrite is due)."""
    current = pq.read_table(path, columns=["split"]).column("split").unique().to_pylist()
    if current == [split]:
        return
    table = pq.read_table(path, schema=clip_schema())
    idx = table.schema.get_field_index("split")
    table = table.set_column(idx, "split", pa.array([split] * table.num_rows, pa.string()))
    atomic_write_table(table, path)


def remove_orphans(out_dir: Path, reports: list[dict]) -> list[Path]:
    """Delete shards that no ok report of `reports` names and reports of sequences not in
    `reports` (left by an earlier run with other inputs or a larger `--limit`); returns them."""
    wanted_reports = {report_path(out_dir, r["sequence_id"]) for r in reports}
    wanted_shards = {shard_path(out_dir, r["sequence_id"]) for r in reports if r["status"] == "ok"}
    orphans = [p for p in sorted((out_dir / "shards").glob("clips-*.parquet")) if p not in wanted_shards]
    orphans += [p for p in sorted((out_dir / "report").glob("*.json")) if p not in wanted_reports]
    for p in orphans:
        p.unlink(missing_ok=True)
    return orphans


def finalize(out_dir: Path, reports: list[dict], split_of: dict[str, str], config: CurationConfig) -> dict:
    """Split columns, `manifest.parquet`, `splits.json` and the dataset card from the reports
    (the run's sequences, in order); orphaned shards and reports are removed first."""
    remove_orphans(out_dir, reports)
    parts = []
    splits: dict[str, list[str]] = {k: [] for k in SPLITS}
    light = [f.name for f in clip_schema() if f.name not in HEAVY_COLUMNS]
    for r in reports:
        if r.get("split") != split_of.get(r["sequence_id"]):
            r["split"] = split_of.get(r["sequence_id"])
            write_report(out_dir, r)
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


__all__ = ["build_dataset", "finalize", "process_one", "remove_orphans", "report_path", "write_report", "SequenceReport"]
