"""The alerting rules load in Prometheus and fire exactly when their unit tests say."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.dashboard_exprs import DASHBOARDS, RULES_FILE

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package `prometheus`; `make prometheus` installs it)",
)


@needs_promtool
def test_promtool_check_rules() -> None:
    proc = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    tests = DASHBOARDS / "prometheus" / "lookout-rules.test.yml"
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", tests.name], cwd=tests.parent,
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_promtool_check_config_as_shipped(tmp_path) -> None:
    """The example config, unedited and checked from elsewhere, finds its rules file."""
    config = DASHBOARDS / "prometheus" / "prometheus.yml"
    proc = subprocess.run(
        [PROMTOOL, "check", "config", str(config)], cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 1 rule files found" in proc.stdout, proc.stdout
