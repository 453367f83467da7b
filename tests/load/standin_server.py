"""A tiny stand-in for the reference service: the v2 paths the load generators call, no model.

Run as ``python tests/load/standin_server.py [--delay-ms D]``; it binds 127.0.0.1 on a free port
and prints ``PORT <n>`` on stdout once listening. ``POST /control/stall {"seconds": s}`` makes every
inference request that arrives in the next ``s`` seconds wait until the stall ends (a server that
stops answering for a while); ``GET /control/count`` returns how many inference requests arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time

from aiohttp import web

OUTPUT = b'{"model_name":"m","outputs":[{"name":"scores","shape":[1,1],"datatype":"FP32","data":[0.5]}]}'


def build_app(delay_ms: float) -> web.Application:
    state = {"stall_until": 0.0, "count": 0}

    async def ready(_request: web.Request) -> web.Response:
        return web.Response(body=b'{"ready":true}', content_type="application/json")

    async def infer(request: web.Request) -> web.Response:
        state["count"] += 1
        await request.read()
        wait_s = max(state["stall_until"] - time.monotonic(), 0.0) + delay_ms / 1000.0
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        return web.Response(body=OUTPUT, content_type="application/json")

    async def stall(request: web.Request) -> web.Response:
        body = await request.json()
        state["stall_until"] = time.monotonic() + float(body["seconds"])
        return web.Response(body=b"{}", content_type="application/json")

    async def count(_request: web.Request) -> web.Response:
        return web.json_response({"count": state["count"]})

    app = web.Application()
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/v2/health/live", ready)
    app.router.add_post("/v2/models/{name}/infer", infer)
    app.router.add_post("/control/stall", stall)
    app.router.add_get("/control/count", count)
    return app


async def serve(delay_ms: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(build_app(delay_ms), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=1024).start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.delay_ms))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
