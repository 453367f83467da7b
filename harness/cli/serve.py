"""`harness serve`: run the reference inference service in the foreground (Open Inference Protocol v2).

Also `python -m harness.service`. Logs one JSON event per line on stdout ("listening", "ready", ...);
exits 0 after a graceful drain on SIGTERM, 3 if the model cannot be loaded, 2 for a bad setting.
"""

from __future__ import annotations

from typing import Any

from harness.service.options import add_service_arguments, run_from_args

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="run the reference inference service",
        description="Run the reference inference service (Open Inference Protocol v2 REST) until SIGTERM.",
    )
    add_service_arguments(parser)
    parser.set_defaults(func=run_from_args)
