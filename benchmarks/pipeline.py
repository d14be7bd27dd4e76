"""Pipeline throughput benchmark, runnable without the CLI:
`python benchmarks/pipeline.py [--n 200] [--json out.json]` against the Kafka and Redis of
the LOOKOUT_* settings (the embedded stack by default). Items/s per modality through a real
worker with the configured encoders and with `trivial` ones, and the bare encoders on the
same payloads. The same measurement backs `lookout bench pipeline`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# This folder holds `encoders.py`, which would shadow the `encoders` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from streams.pipeline_bench import run_pipeline_bench  # noqa: E402
from streams.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="records per modality")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args()
    report = run_pipeline_bench(Settings(), n=args.n, progress=lambda m: print(m, flush=True))
    for r in report["results"]:
        print(f"{r['modality']:6} {r['kind']:8} {r['encoders']:8} {r['spec']:20} "
              f"{r['items']:5} items {r['seconds']:8.2f} s {r['items_per_s']:9.1f} items/s")
    print(json.dumps(report["ratios"], indent=2))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
