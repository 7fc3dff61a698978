"""Ray job entry point for curating Nymeria on a cluster.

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env-json '{"pip": ["-e ."]}' -- \
        python pipelines/curation_job.py --config pipelines/curation.toml

Inside a Ray job `ray.init()` attaches to the cluster that runs it (RAY_ADDRESS is set by Ray).
The `[run]` table of the config names the input/output folders (on storage every node sees) and
the number of concurrent sequence tasks; the other tables are `CurationConfig` sections.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import ray

from egotwin_bench.curation.config import load_config_file
from egotwin_bench.curation.pipeline import build_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="TOML file (see pipelines/curation.toml)")
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N sequences (the splits are computed over these N)")
    args = parser.parse_args(argv)

    try:
        config, run = load_config_file(args.config)
    except ValueError as exc:
        parser.error(str(exc))
    missing = [k for k in ("nymeria_root", "out") if k not in run]
    if missing:
        parser.error(f"{args.config}: [run] needs {missing}")
    if not ray.is_initialized():
        ray.init()  # inside `ray job submit` this attaches to the job's cluster (RAY_ADDRESS)
    card = build_dataset(run["nymeria_root"], run["out"], config, workers=int(run.get("workers", 8)),
                         limit=args.limit, engine="ray")
    print(json.dumps({"clips": card["clips"], "sequences": card["sequences"], "skip_reasons": card["skip_reasons"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
