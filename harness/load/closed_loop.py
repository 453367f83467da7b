"""A closed-loop HTTP load generator for the service benchmark and the sweep (aiohttp, its own process and core).

``concurrency`` workers each send one pre-encoded v2 request, wait for the answer, and send the next.
After a warm-up, requests that complete inside the measurement window are counted; the result is
one JSON object on stdout: throughput, latency percentiles, errors and the generator's own CPU use
(near 100% means the client, not the server, was the limit).

With ``--protocol JSON`` (`harness.protocolspec.ProtocolSettings`) the clients speak that protocol instead
(`run_closed_loop_protocol`): worker after worker takes the adapter's next request n (one sequence, as every
sender), each answer is read by the adapter (a cut stream is a failure), and a generative protocol's window
adds ``tokens``: TTFT / TPOT / ITL percentiles, output tokens per second and goodput under the bounds given
(``--ttft-ms``, ``--tpot-ms``, ``--e2e-ms``), exactly as `harness.measure.tokens` computes them for any load.
A closed-loop request's latency runs from its own send time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Any, Callable

__all__ = ["run_closed_loop", "run_closed_loop_protocol", "main"]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_closed_loop(url: str, body: bytes, samples_per_request: int, concurrency: int, warmup_s: float, duration_s: float, timeout_s: float = 30.0) -> dict[str, Any]:
    """Return throughput and latency of ``concurrency`` closed-loop clients posting ``body`` to ``url``."""
    import aiohttp
    import numpy as np

    measure_from = time.perf_counter() + warmup_s
    measure_to = measure_from + duration_s
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures: dict[str, int] = {}
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            begin = time.perf_counter()
            if begin >= measure_to:
                return
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                end = time.perf_counter()
                if measure_from <= end <= measure_to:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                await asyncio.sleep(0.01)
                continue
            end = time.perf_counter()
            if measure_from <= end <= measure_to:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(end - begin)

    cpu_before = None
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_before = _cpu_s()
        await asyncio.gather(*tasks)
    cpu_used = _cpu_s() - cpu_before
    ok = len(latencies)
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([float("nan")])
    return {
        "concurrency": concurrency,
        "duration_s": duration_s,
        "requests_ok": ok,
        "requests_per_s": round(ok / duration_s, 2),
        "samples_per_s": round(ok * samples_per_request / duration_s, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "errors": sum(n for code, n in statuses.items() if code != 200) + sum(failures.values()),
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
        "failures": failures,
        "client_cpu_percent": round(100.0 * cpu_used / duration_s, 1),
        "cores": sorted(os.sched_getaffinity(0)),
    }


async def run_closed_loop_protocol(base_url: str, protocol: Any, concurrency: int, warmup_s: float, duration_s: float,
                                   timeout_s: float = 30.0, token_slo: Any = None) -> dict[str, Any]:
    """Return throughput, latency and (a generative protocol) token figures of ``concurrency`` closed-loop clients
    sending the requests of ``protocol`` (`ProtocolSettings`) to ``base_url``; see the module docs."""
    import itertools

    import aiohttp

    from harness.load.protocols import aio, build_adapter
    from harness.measure.percentiles import percentiles
    from harness.measure.tokens import has_tokens, summarize_tokens
    from harness.request_records import RequestRecord
    from harness.slo import Slo

    adapter = build_adapter(protocol)
    numbers = itertools.count()
    measure_from = time.monotonic() + warmup_s
    measure_to = measure_from + duration_s
    records: list[RequestRecord] = []
    epoch_minus_mono = time.time() - time.monotonic()

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < measure_to:
            begin = time.monotonic()
            reading, latency_ms = await aio.send(session, adapter, base_url, next(numbers), timeout_s, begin)
            if measure_from <= time.monotonic() <= measure_to:
                records.append(RequestRecord(begin + epoch_minus_mono, begin + epoch_minus_mono, latency_ms,
                                             source="closed-loop", **reading.record_fields()))
            if not reading.ok:
                await asyncio.sleep(0.01)  # a refusing server is not hammered in a tight loop

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        cpu_before = _cpu_s()
        await asyncio.gather(*tasks)
    cpu_used = _cpu_s() - cpu_before
    ok = [r for r in records if r.ok]
    figures = percentiles([r.latency_ms for r in ok], (50, 90, 95, 99))
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    result: dict[str, Any] = {
        "concurrency": concurrency, "duration_s": duration_s, "protocol": adapter.name, "requests_ok": len(ok),
        "requests_per_s": round(len(ok) / duration_s, 2), "samples_per_s": round(len(ok) / duration_s, 2),
        **{f"p{q:g}_ms": round(v, 3) if v == v else None for q, v in figures.items()},
        "errors": len(records) - len(ok), "statuses": statuses,
        "failures": {r.error[:60]: 1 for r in records if not r.ok and r.error},
        "client_cpu_percent": round(100.0 * cpu_used / duration_s, 1), "cores": sorted(os.sched_getaffinity(0)),
    }
    if has_tokens(records):
        result["tokens"] = summarize_tokens(records, Slo(), token_slo, duration_s=duration_s).to_dict()
    return result


def _run(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # the standard loop only makes the client a little hungrier
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the load, print the JSON result; return 0."""
    parser = argparse.ArgumentParser(prog="python -m harness.load.closed_loop", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of the service (one-shot mode)")
    parser.add_argument("--model", help="the reference model (oip-v2; required without --protocol)")
    parser.add_argument("--batch", type=int, default=1, help="samples per request")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument(
        "--windows", action="store_true", help='run one window per stdin line: {"url": ..., "duration_s": ..., "warmup_s": ...}'
    )
    parser.add_argument("--protocol", default=None, metavar="JSON",
                        help="ProtocolSettings as JSON: speak that protocol (token figures for a generative one)")
    for flag in ("--ttft-ms", "--tpot-ms", "--e2e-ms"):
        parser.add_argument(flag, type=float, default=None, help="generative: a good request's bound, for goodput")
    args = parser.parse_args(argv)
    if not args.windows and not args.url:
        parser.error("--url is required without --windows")
    if args.protocol is not None:
        return _protocol_main(args)
    if not args.model:
        parser.error("--model is required without --protocol")
    import orjson

    from harness.service.registry import example_request

    body = orjson.dumps(example_request(args.model, args.batch, seed=7))

    def window(base_url: str, warmup_s: float, duration_s: float) -> dict[str, Any]:
        url = f"{base_url.rstrip('/')}/v2/models/{args.model}/infer"
        return _run(run_closed_loop(url, body, args.batch, args.concurrency, warmup_s, duration_s))

    return _serve_windows(args, window)


def _serve_windows(args: argparse.Namespace, window: Callable[[str, float, float], dict[str, Any]]) -> int:
    """Run one window (``--url``) or, with ``--windows``, one per stdin line; print one JSON object per window."""
    if not args.windows:
        sys.stdout.write(json.dumps(window(args.url, args.warmup_s, args.duration_s)) + "\n")
        return 0
    sys.stdout.write(json.dumps({"event": "ready"}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if line.strip():
            spec = json.loads(line)
            result = window(spec["url"], float(spec.get("warmup_s", args.warmup_s)), float(spec.get("duration_s", args.duration_s)))
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    return 0


def _protocol_main(args: argparse.Namespace) -> int:
    """Run the windows (or one run) of ``--protocol``'s clients; print one JSON object per window."""
    from harness.protocolspec import protocol_settings
    from harness.slo import TokenSlo

    protocol = protocol_settings(json.loads(args.protocol))
    token_slo = TokenSlo(args.ttft_ms, args.tpot_ms, args.e2e_ms)

    def window(base_url: str, warmup_s: float, duration_s: float) -> dict[str, Any]:
        return _run(run_closed_loop_protocol(base_url, protocol, args.concurrency, warmup_s, duration_s,
                                             token_slo=token_slo))

    return _serve_windows(args, window)

if __name__ == "__main__":
    sys.exit(main())
