"""`python -m harness.service`: run the reference inference service (the same flags as `harness serve`)."""

from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError
from harness.service.options import add_service_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and serve; return the exit code (2 for a bad flag or config value)."""
    parser = argparse.ArgumentParser(prog="python -m harness.service", description="The reference inference service (Open Inference Protocol v2).")
    add_service_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except HarnessError as exc:
        print(f"harness serve: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
