"""`make bench-gpu` (benchmarks/gpu.py): refuses without CUDA in one line, and its dry run
on the CPU runs every section's code with tiny sizes, so the GPU run is not its first run.
On a CUDA machine the `gpu` test below runs the same code there (`pytest -m gpu`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.gpu import main, run_gpu_tests
from encoders.errors import EncoderError
from encoders.runtime import Runtime

TINY = ["--no-tests", "--batch-sizes", "1,2", "--seconds", "0.01", "--compile", "off",
        "--decode-frames", "4", "--probe-items", "2", "--queries", "1,8"]
SPECS = ["--encoders", "video=efficientnet-lite0,audio=aisfx,logs=minilm"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_refuses_in_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "gpu.json"
    assert main(["--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA device" in err and "--device cpu" in err
    assert not out.exists()


@pytest.fixture
def bench_home(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LOOKOUT_HOME in pytest's cache: the label bridge's class vectors survive runs."""
    home = Path(request.config.cache.mkdir("lookout-gpu-bench-home"))
    monkeypatch.setenv("LOOKOUT_HOME", str(home))
    return home


@pytest.mark.slow
def test_the_cpu_dry_run_writes_every_section(tmp_path: Path, bench_home: Path) -> None:
    out = tmp_path / "gpu.json"
    assert main(["--device", "cpu", *TINY, *SPECS, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["gpu"] == {"device": "cpu", "dry_run": True, "name": None}
    assert report["machine"]["git_commit"] and report["date"]
    assert "tests" not in report  # --no-tests

    decode = {(r["path"], r["batch_size"]) for r in report["decode"]["results"]}
    assert decode == {(p, b) for p in ("opencv_cpu", "torchvision_cpu") for b in (1, 2)}
    assert all(r["frames_per_s"] > 0 for r in report["decode"]["results"])

    rows = report["encoders"]["results"]
    settings = {(r["spec"], r["precision"], r["batch_size"]) for r in rows}
    assert settings == {(s, p, b) for s in ("efficientnet-lite0", "aisfx", "minilm")
                        for p in ("float32", "float16", "bfloat16") for b in (1, 2)}
    assert all(r["items_per_s"] > 0 and r["compile"] is False for r in rows)
    # autocast is CUDA-only: on the CPU every precision runs float32, and says so
    assert {r["autocast"] for r in rows} == {None}
    assert min(r["min_cosine_vs_reference"] for r in rows) > 0.9999
    assert {r["cosine_reference"] for r in rows} == {"compile=False precision=float32"}

    assert [run["queries"] for run in report["matching"]["runs"]] == [1, 8]
    assert report["ratios"]["minilm_bfloat16_eager_vs_float32_eager"] > 0
    assert report["ratios"]["decode_torchvision_cpu_vs_opencv_cpu_batch2"] > 0


@pytest.mark.slow
def test_the_gpu_tests_section_counts_a_real_pytest_run() -> None:
    tests = run_gpu_tests(["tests/unit/encoders/test_encoder_gpu.py"], progress=lambda _m: None)
    assert tests["exit_code"] == 0 and tests["failed"] == tests["errors"] == 0
    assert tests["passed"] + tests["skipped"] == 2
    assert tests["passed" if torch.cuda.is_available() else "skipped"] == 2


def test_precision_picks_the_cuda_autocast_dtype_and_never_autocasts_a_cpu() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert Runtime(cuda, precision="float16").autocast_dtype == torch.float16
    assert Runtime(cuda, precision="bfloat16").autocast_dtype == torch.bfloat16
    assert Runtime(cuda, precision="float32").autocast_dtype is None
    assert Runtime(cpu, precision="bfloat16").autocast_dtype is None
    with pytest.raises(EncoderError, match="unknown precision 'fp8'"):
        Runtime(cpu, precision="fp8")


@pytest.mark.gpu
def test_on_cuda_frames_decode_on_the_gpu_and_autocast_applies(tmp_path: Path,
                                                               bench_home: Path) -> None:
    out = tmp_path / "gpu.json"
    assert main(["--device", "cuda", *TINY, "--encoders", "video=efficientnet-lite0",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["gpu"]["name"] and report["gpu"]["dry_run"] is False
    assert {r["path"] for r in report["decode"]["results"]} == {"opencv_cpu", "torchvision_cuda"}
    rows = report["encoders"]["results"]
    assert {r["autocast"] for r in rows} == {None, "float16", "bfloat16"}
    assert all(r["peak_gpu_mb"] > 0 for r in rows)
    assert min(r["min_cosine_vs_reference"] for r in rows) > 0.97
