"""GPU benchmark (issue 18, item 5): the GPU tests, then decoding, encoders and matching on
a CUDA device, written as one JSON report (`make bench-gpu` -> `.bench/gpu.json`).

    python -m benchmarks.gpu                        # on a CUDA machine: everything
    python -m benchmarks.gpu --device cpu --no-tests --batch-sizes 1,2 --seconds 0.05 \\
        --compile off --decode-frames 4 --probe-items 2 --queries 1,8 \\
        --json /tmp/gpu.json                      # dry run

Sections of the report (besides `date`, `machine` and `gpu`):

  - `tests`: `pytest -m gpu` on the suite (the tests marked `gpu` skip without CUDA):
    passed / failed / skipped / errors and pytest's exit code.
  - `decode`: JPEG frames/s of 640x480 frames per batch size, the worker's two paths:
    OpenCV one by one on the CPU, and `torchvision.io.decode_jpeg(device=...)` in one
    batch (nvJPEG on CUDA; `encoders.image.decode_jpegs_on_device`).
  - `encoders`: items/s, decode included (bytes in, unit vectors out: the timing loop of
    `lookout bench encoders`, `encoders.benchmark.bench_encoder`; built as the worker
    builds them, `streams.worker.encoders`), for each encoder x
    torch.compile off/on x precision (float32 = no autocast, float16, bfloat16 autocast)
    x batch size; with the first batch's seconds (where compile time shows), peak GPU
    memory, and the minimum cosine of each setting's vectors against float32 eager on the
    same payloads (what reduced precision costs in quality).
  - `matching`: `benchmarks.matching` on the device (1 vs N standing queries).
  - `ratios`: per encoder, the best items/s of each setting over float32 eager; nvJPEG
    over OpenCV at the largest batch.

Without a CUDA device it refuses in one line (exit 2) unless `--device cpu` asks for a dry
run: the same code on the CPU, where autocast does not apply (the report says so per row),
so its figures say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from encoders.base import Encoder
from encoders.benchmark import CONTENT_TYPES, bench_encoder, sample_payloads
from encoders.image import decode_image, decode_jpegs_on_device
from encoders.modality import Modality
from encoders.runtime import resolve_device

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ENCODERS = (("video", "efficientnet-lite0"), ("audio", "aisfx"), ("logs", "minilm"))
DEFAULT_BATCH_SIZES = (1, 8, 32, 128)
PRECISIONS = ("float32", "float16", "bfloat16")
NO_CUDA = ("bench-gpu: torch {torch} sees no CUDA device; run it on a machine with an NVIDIA "
           "GPU, or pass --device cpu for a dry run of the same code")

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class GpuBenchConfig:
    """What to measure; the defaults are the full run `make bench-gpu` does."""

    device: str = "cuda"
    encoders: tuple[tuple[str, str], ...] = DEFAULT_ENCODERS
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    precisions: tuple[str, ...] = PRECISIONS
    compile_modes: tuple[bool, ...] = (False, True)
    seconds: float = 2.0
    decode_frames: int = 256
    probe_items: int = 16
    queries: tuple[int, ...] = (1, 10_000)
    tests: bool = True


# --- tests ----------------------------------------------------------------------------------
def run_gpu_tests(paths: Sequence[str] = ("tests",), progress: Progress = print) -> dict:
    """`pytest -m gpu` in a subprocess; the counts come from its JUnit XML."""
    progress(f"running the GPU tests: pytest -m gpu {' '.join(paths)}")
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "gpu-tests.xml"
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "gpu", "-q", f"--junitxml={xml}", *paths],
            cwd=REPO, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        counts = junit_counts(xml) if xml.exists() else {}
    return {"command": f"pytest -m gpu {' '.join(paths)}", "exit_code": proc.returncode,
            "seconds": round(seconds, 1), **counts,
            "output_tail": proc.stdout[-2000:] if proc.returncode not in (0, 5) else ""}


def junit_counts(xml: Path) -> dict[str, int]:
    """passed / failed / errors / skipped from a pytest JUnit XML report."""
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None, f"no testsuite in {xml}"
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return {"passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
            "failed": n["failures"], "errors": n["errors"], "skipped": n["skipped"]}


# --- decode ---------------------------------------------------------------------------------
def bench_decode(device: torch.device, batch_sizes: Sequence[int], frames: int,
                 seconds: float) -> list[dict]:
    """JPEG frames/s per batch size: OpenCV one by one vs torchvision in one batch."""
    payloads = sample_payloads("video", frames)
    rows = []
    for bs in batch_sizes:
        batches = [payloads[i:i + bs] for i in range(0, len(payloads) - bs + 1, bs)] or \
            [payloads[:bs]]
        paths: dict[str, Callable[[list[bytes]], object]] = {
            "opencv_cpu": lambda b: [decode_image(p, "image/jpeg") for p in b],
            f"torchvision_{device.type}": lambda b: decode_jpegs_on_device(b, device),
        }
        for path, decode in paths.items():
            rate = _frames_per_s(decode, batches, device, seconds)
            rows.append({"path": path, "batch_size": bs, "frames_per_s": round(rate, 1)})
    return rows


def _frames_per_s(decode: Callable[[list[bytes]], object], batches: list[list[bytes]],
                  device: torch.device, seconds: float) -> float:
    decode(batches[0])  # warm-up: nvJPEG handles, allocator
    _sync(device)
    done, start = 0, time.perf_counter()
    while True:
        decode(batches[done % len(batches)])
        done += 1
        _sync(device)
        if time.perf_counter() - start >= seconds:
            break
    return done * len(batches[0]) / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- encoders -------------------------------------------------------------------------------
def bench_encoders(config: GpuBenchConfig, progress: Progress = print) -> list[dict]:
    """One row per encoder x compile x precision x batch size."""
    from streams.config.settings import Settings
    from streams.worker.encoders import build_modality_encoder

    device = resolve_device(config.device)
    settings = Settings()  # the worker's cache folder (label-bridge class vectors)
    rows: list[dict] = []
    for modality, spec in config.encoders:
        probe = sample_payloads(modality, config.probe_items, seed=1)
        reference: tuple[str, torch.Tensor] | None = None  # the first setting's vectors
        for compiled in config.compile_modes:
            progress(f"loading {spec} ({modality}) on {device}, compile={compiled}")
            start = time.perf_counter()
            encoder = build_modality_encoder(
                settings.model_copy(update={"device": str(device), "torch_compile": compiled}),
                Modality(modality), spec)
            load_s = time.perf_counter() - start
            for precision in config.precisions:
                progress(f"measuring {spec}: compile={compiled} precision={precision}")
                encoder.runtime = dataclasses.replace(encoder.runtime, precision=precision)
                setting = _measure_setting(encoder, spec, probe, config, load_s)
                vectors, per_batch = setting.pop("vectors"), setting.pop("per_batch")
                reference = reference or (f"compile={compiled} precision={precision}", vectors)
                setting["cosine_reference"] = reference[0]
                setting["min_cosine_vs_reference"] = _min_cosine(vectors, reference[1])
                rows.extend({"compile": compiled, "precision": precision, **setting, **r}
                            for r in per_batch)
            del encoder
            _free(device)
    return rows


def _measure_setting(encoder: Encoder, spec: str, probe: list[bytes], config: GpuBenchConfig,
                     load_s: float) -> dict[str, Any]:
    """First batch (compile happens there), vectors of the probe payloads, then items/s."""
    device = encoder.device
    ctype = CONTENT_TYPES[encoder.modality]
    payloads = [p.encode() if isinstance(p, str) else p for p in probe]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    vectors = encoder.encode_payloads(payloads, [ctype] * len(payloads)).float().cpu()
    first_s = time.perf_counter() - start
    results = bench_encoder(encoder, spec, config.batch_sizes, config.seconds, load_s=load_s)
    dtype = encoder.runtime.autocast_dtype
    return {
        "model_id": encoder.model_id, "spec": spec, "modality": encoder.modality,
        "autocast": None if dtype is None else str(dtype).removeprefix("torch."),
        "first_batch_s": round(first_s, 3), "load_s": round(load_s, 2),
        "peak_gpu_mb": (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                        if device.type == "cuda" else None),
        "vectors": vectors,
        "per_batch": [{"batch_size": r.batch_size, "items_per_s": r.items_per_s,
                       "ms_per_batch": r.ms_per_batch, "batches": r.batches} for r in results],
    }


def _min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(float(torch.nn.functional.cosine_similarity(a, b, dim=-1).min()), 5)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --- matching, ratios, report ---------------------------------------------------------------
def bench_matching(device: str, queries: Sequence[int], dry: bool) -> dict:
    """`benchmarks.matching` (log lines, minilm) on the device: 1 vs N standing queries."""
    from benchmarks.matching import run

    batch, batches = (8, 2) if dry else (256, 10)
    return run("minilm", "logs", list(queries), batch, batches, device)


def ratios(encoder_rows: list[dict], decode_rows: list[dict]) -> dict[str, float]:
    """Best items/s of each setting over float32 eager, per encoder; GPU over CPU decode."""
    best: dict[tuple[str, bool, str], float] = {}
    for r in encoder_rows:
        key = (r["spec"], r["compile"], r["precision"])
        best[key] = max(best.get(key, 0.0), r["items_per_s"])
    out = {}
    for (spec, compiled, precision), rate in sorted(best.items()):
        base = best.get((spec, False, "float32"))
        if base and (compiled, precision) != (False, "float32"):
            mode = "compiled" if compiled else "eager"
            out[f"{spec}_{precision}_{mode}_vs_float32_eager"] = round(rate / base, 3)
    if decode_rows:
        largest = max(r["batch_size"] for r in decode_rows)
        rates = {r["path"]: r["frames_per_s"] for r in decode_rows if r["batch_size"] == largest}
        cpu = rates.pop("opencv_cpu", None)
        for path, rate in rates.items():
            if cpu:
                out[f"decode_{path}_vs_opencv_cpu_batch{largest}"] = round(rate / cpu, 3)
    return out


def gpu_info(device: torch.device) -> dict[str, Any]:
    """The CUDA device the figures came from (None fields on a CPU dry run)."""
    if device.type != "cuda":
        return {"device": str(device), "dry_run": True, "name": None}
    props = torch.cuda.get_device_properties(device)
    return {
        "device": str(device), "dry_run": False, "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_gb": round(props.total_memory / 2**30, 1),
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "bf16_supported": torch.cuda.is_bf16_supported(),
    }


def run_gpu_bench(config: GpuBenchConfig, progress: Progress = print) -> dict:
    """Every section, assembled with the machine, the date and the git commit."""
    from streams.bench.report import assemble

    device = resolve_device(config.device)
    torch.set_grad_enabled(False)
    sections: dict[str, dict] = {
        "gpu": gpu_info(device),
        "config": {**dataclasses.asdict(config),
                   "encoders": [f"{m}={spec}" for m, spec in config.encoders]},
    }
    if config.tests:
        sections["tests"] = run_gpu_tests(progress=progress)
    progress("decoding JPEG frames")
    decode_rows = bench_decode(device, config.batch_sizes, config.decode_frames, config.seconds)
    encoder_rows = bench_encoders(config, progress)
    progress("matching 1 vs N standing queries")
    sections |= {
        "decode": {"results": decode_rows},
        "encoders": {"results": encoder_rows},
        "matching": bench_matching(str(device), config.queries, dry=device.type != "cuda"),
    }
    report = assemble(sections, device=str(device))
    report["ratios"] = ratios(encoder_rows, decode_rows)
    return report


# --- command line ---------------------------------------------------------------------------
def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,8,32: {text!r}")
    return values


def _choices(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"expected some of {','.join(allowed)}: {text!r}")
        return values
    return parse


def _encoders(text: str) -> tuple[tuple[str, str], ...]:
    pairs = [v.partition("=") for v in text.split(",") if v.strip()]
    if not pairs or any(not sep or not spec for _, sep, spec in pairs):
        raise argparse.ArgumentTypeError(f"expected MODALITY=SPEC,...: {text!r}")
    return tuple((m.strip(), spec.strip()) for m, _, spec in pairs)


def parse_args(argv: Sequence[str] | None = None) -> tuple[GpuBenchConfig, Path]:
    d = GpuBenchConfig()
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu",
                                 description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default=d.device, help="cuda[:N], or cpu for a dry run")
    ap.add_argument("--encoders", type=_encoders, default=d.encoders,
                    help="MODALITY=SPEC,... (default: the three offline defaults)")
    ap.add_argument("--batch-sizes", type=_ints, default=d.batch_sizes)
    ap.add_argument("--precisions", type=_choices(PRECISIONS), default=d.precisions)
    ap.add_argument("--compile", type=_choices(("off", "on")), default=("off", "on"),
                    help="torch.compile settings to measure: off,on")
    ap.add_argument("--seconds", type=float, default=d.seconds,
                    help="minimum timed seconds per setting and batch size")
    ap.add_argument("--decode-frames", type=int, default=d.decode_frames)
    ap.add_argument("--probe-items", type=int, default=d.probe_items,
                    help="payloads whose vectors are compared with the reference setting")
    ap.add_argument("--queries", type=_ints, default=d.queries)
    ap.add_argument("--no-tests", action="store_true", help="skip `pytest -m gpu`")
    ap.add_argument("--json", type=Path, default=Path(".bench/gpu.json"))
    args = ap.parse_args(argv)
    config = GpuBenchConfig(
        device=args.device, encoders=args.encoders, batch_sizes=args.batch_sizes,
        precisions=args.precisions, compile_modes=tuple(c == "on" for c in args.compile),
        seconds=args.seconds, decode_frames=args.decode_frames, probe_items=args.probe_items,
        queries=args.queries, tests=not args.no_tests)
    return config, args.json


def main(argv: Sequence[str] | None = None) -> int:
    config, out = parse_args(argv)
    if config.device != "cpu" and not torch.cuda.is_available():
        print(NO_CUDA.format(torch=torch.__version__), file=sys.stderr)
        return 2

    def progress(msg: str) -> None:
        print(f"bench-gpu: {msg}", file=sys.stderr, flush=True)

    report = run_gpu_bench(config, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    progress(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
