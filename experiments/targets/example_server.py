"""A stand-in for your own inference server: stdlib only, so the example spec runs anywhere.

``python example_server.py --port N`` answers ``GET /health`` with 200 and every POST (an Open Inference
Protocol v2 ``/v2/models/<name>/infer`` included) with a small JSON answer after about 2 ms of "inference".
Replace it with your server: the spec beside it (command-target.yaml) is what changes, not the harness.
"""

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = json.dumps({"outputs": [{"name": "score", "shape": [1], "datatype": "FP32", "data": [0.5]}]}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, b'{"status": "ok"}' if self.path == "/health" else b'{"server": "example"}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        time.sleep(0.002)  # the model
        self._send(200, ANSWER)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
