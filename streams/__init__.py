"""Lookout's streaming side: wire format, embedded stack, Faust worker, queries, alerts, API."""

__version__ = "0.1.0"
