"""The `lookout` command line: one root group, subcommands registered from one module per area."""

from __future__ import annotations

import sys

import click

from encoders.errors import LookoutError

from . import alerts, bench, demo, index, produce, queries, search, sites, stack, worker


@click.group(
    name="lookout",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="lookout", prog_name="lookout")
def cli() -> None:
    """Lookout: watch live video, audio and logs by meaning."""


for _module in (stack, worker, produce, queries, sites, search, alerts, index, demo, bench):
    _module.register(cli)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; usage mistakes and Lookout errors become one line on stderr and exit != 0."""
    try:
        rv = cli.main(args=argv, prog_name="lookout", standalone_mode=False)
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx else "lookout"
        click.echo(f"{path}: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo("lookout: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except LookoutError as exc:
        click.echo(f"lookout: error: {exc}", err=True)
        sys.exit(1)
    if isinstance(rv, int) and rv != 0:
        sys.exit(rv)
