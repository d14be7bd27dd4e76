"""The `lookout` CLI starts without torch: commands that only talk to a worker's API, to
Kafka or to the embedded stack (`query`, `alerts`, `search`, `sites`, `produce`, `stack`,
`demo`) must not pay torch's import (3-4 s of CPU on the 2-core box) on every call. Only
the commands that embed something themselves (`index reindex`, `bench`) load it, when
they run."""

from __future__ import annotations

import json
import subprocess
import sys

NO_WORKER = ["--api", "http://127.0.0.1:9"]
COMMANDS = [
    ["--help"],
    ["query", "list", "--json", *NO_WORKER],
    ["query", "add", "x", "-m", "logs", "-t", "disk full", *NO_WORKER],
    ["alerts", "list", "--json", *NO_WORKER],
    ["search", "disk full", "-m", "logs", *NO_WORKER],
    ["sites", "list", *NO_WORKER],
    ["index", "status", "--help"],
]
# One interpreter runs every command (click's runner), then names what got imported.
PROBE = ("import json, sys; from click.testing import CliRunner; from streams.cli import cli; "
         "codes = [CliRunner().invoke(cli, argv).exit_code for argv in {commands!r}]; "
         "print(json.dumps([codes, sorted(m for m in ('torch', 'transformers', "
         "'sentence_transformers') if m in sys.modules)]))")


def test_commands_that_do_not_embed_load_no_torch() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(commands=COMMANDS)],
                         capture_output=True, text=True, timeout=120, check=True)
    codes, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert codes == [0, 1, 1, 1, 1, 1, 0], out.stdout  # each ran: help, or "no worker API"
    assert loaded == [], out.stdout
