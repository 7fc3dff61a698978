"""Dataset card: `dataset_card.json` (machine-readable) + `dataset_card.md` (for people)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from egotwin_bench.constants import CLIP_SECONDS
from egotwin_bench.curation.shards import atomic_write_text


def card_dict(reports: list[dict], splits: dict[str, list[str]], config: dict, version: str) -> dict:
    """Counts per split, hours, skip reasons, per-clip drop reasons, alignment residuals."""
    ok = [r for r in reports if r["status"] == "ok"]
    skipped = Counter(r["reason"].split(":", 1)[0] for r in reports if r["status"] != "ok")
    drops: Counter = Counter()
    for r in reports:
        drops.update(r.get("drops") or {})
    # Per-clip alignment residuals of the clips that passed the alignment check.
    res_m = [v for r in reports if r["status"] == "ok" for v in (r.get("alignment") or {}).get("clip_residual_m", [])]
    res_deg = [v for r in reports if r["status"] == "ok" for v in (r.get("alignment") or {}).get("clip_residual_deg", [])]

    def stats(x: list[float]) -> dict:
        if not x:
            return {}
        a = np.asarray(x)
        return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "max": float(a.max())}

    filters = config.get("filters", {})
    return {
        "toolkit_version": version,
        "sequences": {"total": len(reports), "ok": len(ok), "skipped": len(reports) - len(ok)},
        "clips": {k: len(v) for k, v in splits.items()} | {"total": sum(len(v) for v in splits.values())},
        "hours": {k: len(v) * CLIP_SECONDS / 3600 for k, v in splits.items()},
        "subjects": {k: sorted({r["subject_id"] for r in ok if r["split"] == k}) for k in splits},
        "locations": {k: sorted({r["location_id"] for r in ok if r["split"] == k}) for k in splits},
        "skip_reasons": dict(sorted(skipped.items())),
        "drop_reasons": dict(sorted(drops.items())),
        "alignment_residual_m": stats(res_m),
        "alignment_residual_deg": stats(res_deg),
        "trajectory_quality_filter": bool(filters.get("min_trajectory_quality", 0.0) > 0),
        "per_sequence": [
            {k: r.get(k) for k in ("sequence_id", "split", "status", "reason", "clips", "notes")}
            | {key: (r.get("alignment") or {}).get(key)
               for key in ("residual_m", "residual_deg", "xsens_drift_m", "xsens_drift_deg")}
            for r in reports
        ],
        "config": config,
    }


def card_markdown(card: dict) -> str:
    lines = [
        "# EgoTwin clips — dataset card",
        "",
        f"Built with egotwin {card['toolkit_version']}. Clips are 5 s: 41 frames of 480x480 undistorted "
        "upright pinhole video at 8 FPS, 81 frames of Xsens motion (23 segments) at 16 FPS, one narration.",
        "",
        "| split | clips | hours | subjects | locations |",
        "|---|---:|---:|---:|---:|",
    ]
    for k in ("train", "val", "test"):
        lines.append(f"| {k} | {card['clips'].get(k, 0)} | {card['hours'].get(k, 0.0):.3f} | "
                     f"{len(card['subjects'].get(k, []))} | {len(card['locations'].get(k, []))} |")
    s = card["sequences"]
    lines += ["", f"Sequences: {s['total']} read, {s['ok']} curated, {s['skipped']} skipped.", "",
              "## Skipped sequences by reason", ""]
    lines += [f"- `{k}`: {v}" for k, v in card["skip_reasons"].items()] or ["- none"]
    lines += ["", "## Dropped clip candidates by reason", ""]
    lines += [f"- `{k}`: {v}" for k, v in card["drop_reasons"].items()] or ["- none"]
    lines += ["", "## Filters", ""] + _filter_lines(card["config"])
    m, d = card["alignment_residual_m"], card["alignment_residual_deg"]
    if m:
        lines += ["", "## Alignment residual (RMS per clip, after re-anchoring on the Aria head)", "",
                  f"- translation: median {m['median'] * 100:.2f} cm, p90 {m['p90'] * 100:.2f} cm, max {m['max'] * 100:.2f} cm",
                  f"- rotation: median {d['median']:.2f}°, p90 {d['p90']:.2f}°, max {d['max']:.2f}°"]
    lines += ["", "## Sequences", "", "| sequence | split | status | clips | reason / notes |", "|---|---|---|---:|---|"]
    for r in card["per_sequence"]:
        remarks = "; ".join(([r["reason"]] if r["reason"] else []) + list(r.get("notes") or []))
        lines.append(f"| {r['sequence_id']} | {r['split'] or ''} | {r['status']} | {r['clips']} | {remarks} |")
    return "\n".join(lines) + "\n"


def _filter_lines(config: dict) -> list[str]:
    """The thresholds of the run, as Markdown bullets (empty when the config is not recorded)."""
    f, a = config.get("filters"), config.get("alignment")
    if not f or not a:
        return ["- (configuration not recorded)"]
    quality = (f"drop clips with an MPS `quality_score` below {f['min_trajectory_quality']}"
               if f["min_trajectory_quality"] > 0 else
               "**off** (`min_trajectory_quality` = 0, the default: MPS closed-loop poses carry no per-pose score "
               "in every release)")
    return [
        f"- span trim: {f.get('trim_s', 0.0)} s shaved off each end of the Xsens / MPS / RGB overlap",
        f"- alignment residual: clips above {a['max_residual_m']} m or {a['max_residual_deg']}° RMS are dropped",
        f"- trajectory gap: clips with an MPS gap over {f['max_trajectory_gap_s']} s are dropped",
        f"- trajectory quality: {quality}",
        f"- static clip: clips where no segment moves {f['static_max_displacement_m']} m are dropped",
        "- NaN: clips touching Xsens frames with NaN/inf values are dropped",
    ]


def write_card(out_dir, card: dict) -> None:
    atomic_write_text(json.dumps(card, indent=2), out_dir / "dataset_card.json")
    atomic_write_text(card_markdown(card), out_dir / "dataset_card.md")
