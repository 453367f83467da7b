"""A team's own server in miniature, for the target tests: stdlib only, one file, written where a test wants it.

``python server.py --port N`` answers every POST with a JSON answer (so the load, the prober and the
steady-state probe count it a success), ``GET /health`` with 200, ``GET /info`` with its working
directory, its ``TOY_PORT`` variable and its pid, and ``GET /hog`` by allocating 512 MiB (past a
memory limit: the kernel's OOM kill). SIGTERM ends it at once, as Python's default does.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["SERVER_SOURCE", "write_server", "spec_yaml"]

SERVER_SOURCE = '''
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/hog":
            hog = bytearray(512 * 2**20)  # zero-filled: every page touched
            self._answer({"hogged": len(hog)})
        elif self.path == "/info":
            self._answer({"cwd": os.getcwd(), "toy_port": os.environ.get("TOY_PORT"), "pid": os.getpid()})
        else:
            self._answer({"status": "ok"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._answer({"outputs": [{"name": "score", "shape": [1], "datatype": "FP32", "data": [0.5]}]})

    def log_message(self, *args):
        pass


port = int(sys.argv[sys.argv.index("--port") + 1])
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


def write_server(folder: Path) -> Path:
    """Write server.py into ``folder`` (made if missing); return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "server.py"
    path.write_text(SERVER_SOURCE)
    return path


def spec_yaml(*, workdir: str = "server", topology: str = "single", replicas: int = 1,
              memory: str = "256Mi") -> str:
    """Return a spec file's text: the toy server as a command target with fast probes and back-off
    (``workdir`` relative to the spec file's folder, as a user writes it)."""
    return f"""\
name: toy
topology: {topology}
replicas: {replicas}
target:
  command: ["{sys.executable}", "server.py", "--port", "{{port}}"]
  workdir: {workdir}
  env: {{TOY_PORT: "{{port}}"}}
  readiness_path: /health
  liveness_path: /health
probes:
  liveness: {{initialDelaySeconds: 1, periodSeconds: 0.5, timeoutSeconds: 1, failureThreshold: 3}}
  readiness: {{periodSeconds: 0.2, timeoutSeconds: 1, failureThreshold: 2}}
restart: {{backoff_base_s: 0.5, backoff_cap_s: 2, reset_after_s: 60}}
terminationGracePeriodSeconds: 2
resources: {{limits.memory: {memory}}}
balancer: {{connect_timeout_s: 0.5, request_timeout_s: 5}}
"""
