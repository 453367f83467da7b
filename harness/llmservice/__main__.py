"""`python -m harness.llmservice --port N [options]`: serve the reference generative service.

Exit codes: 0 after a drain, 2 for a bad option (one line naming it), 1 when the port cannot be bound.
"""

from __future__ import annotations

import argparse
import os
import sys

from harness.config import ENV_FAULT_TOKEN, default_weights_dir
from harness.errors import HarnessError
from harness.llmservice.engine import EngineSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.llmservice",
                                     description="The reference generative service (OpenAI-compatible API).")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=0, help="seed the weights are generated from (default 0)")
    parser.add_argument("--weights-dir", default=None, help="where generated weights are kept "
                                                             "(default $HARNESS_WEIGHTS_DIR or ~/.cache/harness/weights)")
    parser.add_argument("--max-model-len", type=int, default=2048,
                        help="maximum context, prompt plus output tokens; a request over it is a 400 (default 2048)")
    parser.add_argument("--kv-cache-tokens", type=int, default=8192,
                        help="tokens the KV cache holds in all, across running requests (default 8192)")
    parser.add_argument("--block-size", type=int, default=16, help="tokens per KV-cache block (default 16)")
    parser.add_argument("--max-num-seqs", type=int, default=64, help="most requests in the running batch (default 64)")
    parser.add_argument("--max-batched-tokens", type=int, default=512,
                        help="most tokens one step runs: the prefill chunk; bounds a long prompt's attention memory "
                             "(default 512; as large as --max-model-len turns chunked prefill off)")
    parser.add_argument("--max-waiting", type=int, default=1024, help="most requests waiting; more are a 503 (default 1024)")
    parser.add_argument("--grace-period-s", type=float, default=5.0, help="drain time after SIGTERM (default 5)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the options and serve; return the exit code."""
    args = build_parser().parse_args(argv)
    settings = EngineSettings(max_model_len=args.max_model_len, kv_cache_tokens=args.kv_cache_tokens,
                              block_size=args.block_size, max_num_seqs=args.max_num_seqs,
                              max_batched_tokens=args.max_batched_tokens, max_waiting=args.max_waiting)
    problems = settings.check()
    if not 0 <= args.port <= 65535:
        problems.insert(0, f"port={args.port}: must be from 0 to 65535")
    if args.grace_period_s < 0 or args.torch_threads < 1:
        problems.append(f"grace_period_s={args.grace_period_s}, torch_threads={args.torch_threads}: "
                        f"need grace >= 0 and threads >= 1")
    if problems:
        print(f"python -m harness.llmservice: error: {problems[0]}", file=sys.stderr)
        return 2
    from harness.extras import require_extra

    try:  # torch is imported once the port listens; without it, say so now, in one line
        require_extra("service", "the reference generative service")
    except HarnessError as exc:
        print(f"python -m harness.llmservice: error: {exc}", file=sys.stderr)
        return exc.exit_code
    from harness.llmservice.api import LLMApp
    from harness.llmservice.server import emit_event, serve

    app = LLMApp(settings, seed=args.seed, weights_dir=str(args.weights_dir or default_weights_dir()),
                 fault_token=os.environ.get(ENV_FAULT_TOKEN) or None, on_event=emit_event, torch_threads=args.torch_threads)
    try:
        code = serve(app, args.host, args.port, args.grace_period_s)
    except HarnessError as exc:
        print(f"python -m harness.llmservice: error: {exc}", file=sys.stderr)
        return 1
    # drained and said so: skip the interpreter's teardown (torch's takes most of a second, inside the grace period)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
