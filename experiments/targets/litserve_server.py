"""LitServe (``litserve``) with its OpenAI-compatible spec, streaming tokens from a tiny "LLM" made in code.

Runs from its own virtual environment (litserve's pins clash with the harness's; ``make servers`` makes it):

    .venvs/litserve/bin/python litserve_server.py --port 8000

``POST /v1/chat/completions`` (``ls.OpenAISpec``: Server-Sent Events with ``"stream": true``, one JSON
answer without) and ``GET /health`` (200 once the inference worker is up, as LitServe answers it).
The "LLM" is deterministic: the answer is the prompt's words cycled, ``max_completion_tokens``
(or ``max_tokens``) of them, 16 when the request names none, each after ``--token-ms`` of
"decoding" (3 ms by default), the first after ``--prefill-ms`` (10 ms). LitServe runs ``--workers``
inference worker processes (2: one request each at a time) beside its API server process, its
queue manager and multiprocessing's resource tracker: five processes to a replica.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any, Iterator

import litserve as ls

DEFAULT_MAX_TOKENS = 16


class TinyLLM(ls.LitAPI):
    """Streams ``max_tokens`` words taken from the prompt, at a fixed pace."""

    def __init__(self, prefill_s: float, token_s: float) -> None:
        super().__init__(spec=ls.OpenAISpec())
        self.prefill_s, self.token_s = prefill_s, token_s

    def setup(self, device: str) -> None:
        self.vocabulary = ["tiny", "model", "says", "hello"]  # what it answers an empty prompt with

    def decode_request(self, request: Any, context: dict | None = None) -> tuple[list[str], int]:
        words = " ".join(str(m.content or "") for m in request.messages).split() or self.vocabulary
        return words, request.max_completion_tokens or request.max_tokens or DEFAULT_MAX_TOKENS

    def predict(self, inputs: tuple[list[str], int], context: dict | None = None) -> Iterator[str]:
        words, max_tokens = inputs
        time.sleep(self.prefill_s)
        for n, word in enumerate(itertools.islice(itertools.cycle(words), max_tokens)):
            if n:
                time.sleep(self.token_s)
            yield word if n == 0 else " " + word


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--prefill-ms", type=float, default=10.0)
    parser.add_argument("--token-ms", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2, help="inference worker processes (LitServe's workers_per_device)")
    args = parser.parse_args()
    api = TinyLLM(args.prefill_ms / 1000, args.token_ms / 1000)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=args.workers, timeout=30)
    server.run(host=args.host, port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
