"""`lookout demo`: run Lookout end to end on the demo scenario and print its scorecard."""

from __future__ import annotations

import click

from streams.cli.common import load_settings, print_json


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""

    @root.command("demo")
    @click.option("--speed", type=click.FloatRange(min=0.1, max=100), default=1.0,
                  show_default=True, help="Replay speed (2 = twice real time).")
    @click.option("--duration", "duration_s", type=click.FloatRange(min=4, max=3600),
                  default=None, help="Scenario length in seconds (default: the size's, 120 s).")
    @click.option("--seed", type=int, default=7, show_default=True,
                  help="Scenario seed: same seed, same events.")
    @click.option("--size", type=click.Choice(["small", "default"]), default="default",
                  show_default=True, help="small: 3 sources, 12 s (for tests).")
    @click.option("--json", "as_json", is_flag=True, help="Print only the scorecard, as JSON.")
    @click.option("--keep", is_flag=True,
                  help="Leave the worker and the embedded stack running afterwards.")
    def demo(speed: float, duration_s: float | None, seed: int, size: str, as_json: bool,
             keep: bool) -> None:
        """Start the stack and a worker, replay a scenario with known events, score the alerts.

        Everything it started is stopped at the end (also on Ctrl-C) unless --keep.
        """
        from rich.console import Console

        from streams.demo.run import DemoOptions, run_demo
        from streams.demo.view import LiveView, QuietView, render_scorecard

        settings = load_settings()
        opts = DemoOptions(speed=speed, duration_s=duration_s, seed=seed, size=size, keep=keep)
        console = Console(stderr=as_json)
        view = QuietView() if as_json else LiveView(console)
        try:
            card = run_demo(settings, opts, view)
        finally:
            view.close()
        if as_json:
            print_json(card)
        else:
            console.print(render_scorecard(card))
