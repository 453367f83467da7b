"""`harness preflight`: check this machine against what the harness and the model need."""

from __future__ import annotations

import argparse
import json

from harness.paths import path_type, validate_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``preflight`` subcommand."""
    parser = subparsers.add_parser(
        "preflight",
        help="check Python, torch, CUDA, cuDNN, NVIDIA driver, GPU memory, cgroups, ports and disk",
        description="Check this machine before a run. Exit 0 when every requirement is met (a missing GPU "
                    "is reported as absent, not a failure, unless --require-gpu), 1 when one fails.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines instead of a table")
    parser.add_argument("--require-gpu", action="store_true", help="fail when no usable GPU is found")
    parser.add_argument("--min-gpu-memory-gb", type=float, default=8.0, metavar="GB",
                        help="GPU memory the model needs, decimal GB (default: 8)")
    parser.add_argument("--recommended-gpu-memory-gb", type=float, default=None, metavar="GB",
                        help="GPU memory recommended for the model; less is a warning "
                             "(default: 16, or the minimum when that is higher)")
    parser.add_argument("--ports", type=int, default=4, metavar="N",
                        help="free loopback ports needed at once (default: 4)")
    parser.add_argument("--min-free-disk-gb", type=float, default=1.0, metavar="GB",
                        help="free disk needed where weights are stored (default: 1)")
    parser.add_argument("--weights-dir", type=path_type("--weights-dir"), default=None, metavar="DIR",
                        help="where model weights are stored (default: $HARNESS_WEIGHTS_DIR or ~/.cache/harness/weights)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the findings; return 0, or raise VerdictFailed (exit 1) listing every failed check."""
    from harness.preflight import (PreflightOptions, findings_to_json, render_table, run_preflight,
                                   validate_preflight)

    options = PreflightOptions(
        require_gpu=args.require_gpu,
        min_gpu_memory_gb=args.min_gpu_memory_gb,
        recommended_gpu_memory_gb=(args.recommended_gpu_memory_gb if args.recommended_gpu_memory_gb is not None
                                   else max(16.0, args.min_gpu_memory_gb)),
        ports=args.ports,
        min_free_disk_gb=args.min_free_disk_gb,
        weights_dir=args.weights_dir,
    )
    if args.weights_dir is not None:  # the service writes generated weights there
        validate_output_dir(args.weights_dir, "--weights-dir")
    findings = run_preflight(options)
    if args.json:
        print(json.dumps(findings_to_json(findings, options), indent=2))
    else:
        print(render_table(findings))
    validate_preflight(findings)
    return 0
