"""Encoder throughput benchmark, runnable without the CLI:
`python benchmarks/encoders.py [--device cuda] [--batch-sizes 1,8,32] [--json out.json]`.
The same measurement backs `lookout bench encoders`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# This file is named `encoders.py`; drop its folder from the path so the package wins.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from encoders.benchmark import DEFAULT_SPECS, run_encoder_bench  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    sizes = [int(v) for v in args.batch_sizes.split(",")]
    report = run_encoder_bench(
        DEFAULT_SPECS,
        sizes,
        device=args.device,
        min_seconds=args.seconds,
        on_progress=lambda msg: print(msg, flush=True),
    )
    for r in report["results"]:
        print(
            f"{r['modality']:6} {r['model_id']:36} {r['device']:6} bs={r['batch_size']:<4} "
            f"{r['items_per_s']:10.1f} items/s"
        )
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
