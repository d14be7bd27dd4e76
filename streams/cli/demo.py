"""`lookout` commands for demo (filled in by its issue)."""

from __future__ import annotations

import click


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""
