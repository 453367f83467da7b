"""A hostile client's corpus for the reference service: malformed, mistyped, lying and oversized requests.

`make_request` draws one request from a seeded ``random.Random``, so a corpus is a pure function of
its seed: the fuzz benchmark (`harness.bench.fuzz`) sends the same corpus directly to a replica and
through the balancer and compares statuses request by request, and the suite's property test draws
seeds with hypothesis. Forms (the ``form`` field):

- ``json``: an inference request in JSON, valid or with one field replaced by a hostile value (a
  name that is a list, a shape whose element count overflows int64, data of the wrong type, length
  or nesting, out-of-range token ids, ...), or malformed JSON (truncated, invalid UTF-8, too deep);
- ``binary``: the binary tensor data extension, valid or with a lying ``Inference-Header-Content-Length``
  or ``binary_data_size``, missing or extra tensor bytes;
- ``huge``: bodies at, just over, and far over ``max_body_bytes``, with a Content-Length or chunked;
- ``http``: wrong methods and paths, unknown models and versions, the fault hooks without a valid token.

Only methods every HTTP parser knows are used: a method the parser does not know never reaches the
app (the service answers 501 JSON for it; see `harness.service.wire`).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.service.registry import ModelSignature, TensorSpec, get_signature

__all__ = ["FuzzRequest", "FORMS", "make_request", "make_corpus"]

FORMS = ("json", "binary", "huge", "http")
_WEIGHTS = (0.62, 0.24, 0.015, 0.125)  # of the forms above: huge bodies cost megabytes each, so they are few
_NUMPY = {"FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "FP16": "<f2", "FP64": "<f8"}
_OTHER_TYPES = ["FP32", "FP16", "FP64", "INT64", "INT32", "INT8", "UINT64", "BOOL", "BYTES", "fp32", "", "FP32 "]
_HOSTILE: list[Any] = [None, True, False, 0, -1, 1.5, "", "x", "\u0000", [], {}, [[]], [None], {"a": 1}, 2**63 - 1,
                       -(2**63), 2**64 - 1, 2**80, 1e308, -1e308, 5e-324, "9" * 40, ["x"] * 3, {"name": "x"}]
_METHODS = ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")


@dataclass(frozen=True)
class FuzzRequest:
    """One request of the corpus: ``kind`` says what is wrong with it (``valid`` when nothing is)."""

    form: str
    kind: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    pad_to: int = 0  # > 0: the body is padded with JSON whitespace to this many bytes when sent
    chunked: bool = False  # sent with Transfer-Encoding: chunked, no Content-Length

    def payload(self) -> bytes:
        """Return the body to send (built here for padded ones, so a corpus holds no megabytes)."""
        if self.pad_to <= len(self.body):
            return self.body
        return self.body[:-1] + b" " * (self.pad_to - len(self.body)) + self.body[-1:]


def _values(rng: random.Random, spec: TensorSpec, count: int) -> list[Any]:
    if spec.datatype.startswith("INT"):
        return [rng.randrange(int(spec.low), int(spec.high)) for _ in range(count)]
    return [round(rng.uniform(spec.low, spec.high), 4) for _ in range(count)]


def _dumps(payload: Any) -> bytes:
    # the standard library's encoder: unlike orjson it writes any int (2**80) and NaN, as a careless client would
    return json.dumps(payload, allow_nan=True).encode()


def _valid(rng: random.Random, signature: ModelSignature, max_batch: int) -> tuple[dict[str, Any], int]:
    batch = rng.choice((1, 1, 1, 2, 3, 4, max_batch))
    inputs = [{"name": s.name, "shape": [batch, *s.shape], "datatype": s.datatype,
               "data": _values(rng, s, batch * math.prod(s.shape))} for s in signature.inputs]
    request: dict[str, Any] = {"inputs": inputs}
    if rng.random() < 0.2:
        request["id"] = f"fuzz-{rng.randrange(10**6)}"
    if rng.random() < 0.15:
        request["outputs"] = [{"name": s.name, "parameters": {"binary_data": rng.random() < 0.5}} for s in signature.outputs]
    return request, batch


def _shapes(spec: TensorSpec, max_batch: int) -> list[Any]:
    dims = list(spec.shape)
    count = math.prod(dims)
    return [
        [2**64 // count, *dims], [576460752303423488, *dims], [2**63 - 1, *dims], [2**62, *dims], [2**64, *dims],
        [-1, *dims], [0, *dims], [max_batch + 1, *dims], [1], [1, *dims, 1], [1, *[d + 1 for d in dims]], [1.0, *dims],
        [True, *dims], ["1", *dims], [], "1x32", None, [[1], *dims], [1, *dims] * 3, {"0": 1},
    ]


def _data_lies(rng: random.Random, spec: TensorSpec, count: int) -> list[Any]:
    integer = spec.datatype.startswith("INT")
    nested: Any = 0
    for _ in range(rng.choice((40, 70, 300))):
        nested = [nested]
    return [
        _values(rng, spec, count - 1), _values(rng, spec, count + 1), [], ["1"] * count, [True] * count, None,
        {"data": 1}, "0" * count, [_values(rng, spec, 3), _values(rng, spec, 2)], nested, [1e308] * count,
        [float("nan")] * count, [2**63] * count, [2**64 - 1] * count, [2**70] * count, [-1] * count,
        [int(spec.high)] * count if integer else [1e39] * count, [0.5] * count if integer else [[0.5]] * count,
        [[[v]] for v in _values(rng, spec, count)], [None] * count, [{}] * count,
    ]


def _mutate(rng: random.Random, request: dict[str, Any], signature: ModelSignature, max_batch: int) -> str:
    entry = request["inputs"][0]
    spec = signature.inputs[0]
    count = math.prod(entry["shape"])
    choice = rng.randrange(11)
    if choice == 0:
        entry["name"] = rng.choice([[spec.name], {spec.name: 1}, spec.name.upper(), "x" * 5000, *_HOSTILE])
        return "input-name"
    if choice == 1:
        entry["datatype"] = rng.choice([*(t for t in _OTHER_TYPES if t != spec.datatype), *_HOSTILE])
        return "input-datatype"
    if choice in (2, 3):
        entry["shape"] = rng.choice(_shapes(spec, max_batch))
        return "input-shape"
    if choice in (4, 5):
        entry["data"] = rng.choice(_data_lies(rng, spec, count))
        return "input-data"
    if choice == 6:
        entry["parameters"] = rng.choice([*_HOSTILE, {"binary_data_size": rng.choice(_HOSTILE)}])
        return "input-parameters"
    if choice == 7:
        del entry[rng.choice(("name", "shape", "datatype", "data"))]
        return "input-missing-field"
    if choice == 8:
        key = rng.choice(("id", "parameters", "outputs"))
        request[key] = rng.choice([*_HOSTILE, {"binary_data_output": rng.choice(_HOSTILE)}, [{"name": rng.choice(_HOSTILE)}],
                                   [{"name": signature.outputs[0].name, "parameters": {"binary_data": rng.choice(_HOSTILE)}}]])
        return f"request-{key}"
    if choice == 9:
        request["inputs"] = rng.choice([*_HOSTILE, [entry, entry], [entry, {**entry, "name": "extra"}], [1], [[entry]]])
        return "inputs"
    request.clear()
    request["not"] = rng.choice(_HOSTILE)
    return "no-inputs"


def _malformed(rng: random.Random, valid: bytes) -> tuple[str, bytes]:
    choice = rng.randrange(8)
    if choice == 0:
        return "truncated", valid[: rng.randrange(len(valid))]
    if choice == 1:
        return "invalid-utf8", valid.replace(b'"inputs"', b'"in\xff\xfeputs"', 1)
    if choice == 2:
        depth = rng.choice((1000, 1100, 5000))
        return "too-deep", b"[" * depth + b"]" * depth
    if choice == 3:
        return "random-bytes", rng.randbytes(rng.randrange(1, 2000))
    if choice == 4:
        return "not-an-object", rng.choice([b"[]", b'"x"', b"1", b"null", b"true", b""])
    if choice == 5:
        return "number-literals", valid.replace(b"[", b"[1e999, NaN, -Infinity, 123456789012345678901234567890, ", 1)
    if choice == 6:
        return "trailing-garbage", valid + rng.choice([b"}", b",", b"\x00", b" {}"])
    return "duplicate-keys", valid.replace(b"{", b'{"inputs": 1, ', 1)


def _binary(rng: random.Random, signature: ModelSignature, max_batch: int, infer: str) -> FuzzRequest:
    request, batch = _valid(rng, signature, max_batch)
    blobs = []
    for entry, spec in zip(request["inputs"], signature.inputs):
        blob = np.asarray(entry.pop("data"), dtype=_NUMPY[spec.datatype]).tobytes()
        entry["parameters"] = {"binary_data_size": len(blob)}
        blobs.append(blob)
    request.setdefault("parameters", {})["binary_data_output"] = rng.random() < 0.5
    kind = "valid"
    choice = rng.randrange(12)
    spec, entry = signature.inputs[0], request["inputs"][0]
    if choice == 1:
        entry["parameters"]["binary_data_size"] = rng.choice([len(blobs[0]) - 1, len(blobs[0]) + 1, 0, -1, 2**62, 2**64,
                                                              str(len(blobs[0])), float(len(blobs[0])), None, [1]])
        kind = "lying-binary-data-size"
    elif choice == 2:
        entry["shape"] = rng.choice(_shapes(spec, max_batch))
        entry["parameters"]["binary_data_size"] = rng.choice([0, len(blobs[0]), (2**64 * 4) % 2**64])
        kind = "binary-shape"
    elif choice == 3 and spec.datatype.startswith("INT"):
        values = np.full(len(blobs[0]) // 8, rng.choice([-1, int(spec.high), 2**63 - 1, -(2**63)]), dtype="<i8")
        blobs[0] = values.tobytes()
        kind = "binary-out-of-range"
    elif choice == 4:
        entry["datatype"] = rng.choice([t for t in _OTHER_TYPES if t != spec.datatype])
        kind = "binary-datatype"
    header = _dumps(request)
    body = header + b"".join(blobs)
    length: Any = len(header)
    if choice == 5:
        length = rng.choice([len(body) + 1, len(body) * 2, 0, -5, len(header) - 1, len(header) // 2, len(header) + 3,
                             "abc", "", "12abc", f" {len(header)}", f"+{len(header)}", "1_0", "9" * 25, "0x10", "\u00b2"])
        kind = "lying-header-length"
    elif choice == 6:
        body = body[: len(body) - rng.randrange(1, max(2, len(blobs[0])))]
        kind = "binary-truncated"
    elif choice == 7:
        body += rng.randbytes(rng.randrange(1, 64))
        kind = "binary-trailing-bytes"
    elif choice == 8:
        length = None
        kind = "binary-without-header-length"
    headers = [("content-type", "application/octet-stream")]
    if length is not None:
        headers.append(("inference-header-content-length", str(length).encode("utf-8").decode("latin-1")))
    return FuzzRequest("binary", kind, "POST", infer, tuple(headers), body)


def _http(rng: random.Random, signature: ModelSignature, infer: str) -> FuzzRequest:
    name, version = signature.name, signature.version
    choice = rng.randrange(6)
    if choice == 0:
        method = rng.choice(_METHODS)
        return FuzzRequest("http", "wrong-method", method, rng.choice([infer, "/v2/health/ready", "/v2/repository/index", "/metrics"]))
    if choice == 1:
        path = rng.choice([f"/v2/models/{name}x/infer", f"/v2/models/{name}/versions/{version}9/infer",
                           f"/v2/models/{name}/versions/{version}/infer", "/v2/models//infer", "/v2/models/%00/infer",
                           f"/v2/models/{name}/infer/x", "/v2/" + "a" * 3000, "/../../etc/passwd", "/v2/models/\u00e9/ready",
                           f"/v2/models/{name}/versions", f"/v2/models/{name}/versions/{version}/ready", "/v3/health/live",
                           "/v2//health//ready/", f"/v2/models/{name}?x=1", "/metrics/x"])
        method = "POST" if path.endswith("infer") else "GET"
        return FuzzRequest("http", "path", method, path, (("content-type", "application/json"),), b"{}" if method == "POST" else b"")
    if choice == 2:
        token = rng.choice([None, "Bearer", "Bearer ", "Basic abc", "Bearer wrong", "bearer " + "x" * 200, "\u00ff"])
        headers = (("authorization", token.encode("utf-8").decode("latin-1")),) if token is not None else ()
        kind_path = rng.choice(["/v2/faults", "/v2/faults/crash", "/v2/faults/hang", "/v2/faults/nope", "/v2/faults/crash/x"])
        method = "POST" if kind_path.count("/") == 3 else rng.choice(("GET", "DELETE", "POST"))
        return FuzzRequest("http", "fault-hook-auth", method, kind_path, headers, _dumps({"exit_code": 3}))
    if choice == 3:
        return FuzzRequest("http", "repository-index", "POST", "/v2/repository/index", (("content-type", "application/json"),),
                           rng.choice([b"", b"{}", b'{"ready": true}', b'{"ready": "yes"}', b"[]", b"{", b"\xff", b'{"ready": null}']))
    if choice == 4:
        return FuzzRequest("http", "content-type", "POST", infer, (("content-type", rng.choice(["text/plain", "", "x/y; q=\u00ff"])),),
                           _dumps(_valid(rng, signature, 4)[0]))
    return FuzzRequest("http", "metadata", "GET", rng.choice([f"/v2/models/{name}", f"/v2/models/{name}/ready", "/v2", "/v2/health/live"]))


def _huge(rng: random.Random, signature: ModelSignature, max_body_bytes: int, infer: str) -> FuzzRequest:
    valid = _dumps(_valid(rng, signature, 1)[0])
    size, kind = rng.choice([(max_body_bytes, "at-limit"), (max_body_bytes + 1, "over-limit-by-1"),
                             (3 * max_body_bytes, "far-over-limit"), (max_body_bytes // 2, "half-limit")])
    chunked = rng.random() < 0.3
    return FuzzRequest("huge", kind + ("-chunked" if chunked else ""), "POST", infer, (("content-type", "application/json"),),
                       valid, pad_to=size, chunked=chunked)


def make_request(rng: random.Random, model: str, *, max_body_bytes: int = 4 * 2**20, max_batch_size: int = 32) -> FuzzRequest:
    """Return one request of the corpus for ``model``, drawn from ``rng``."""
    signature = get_signature(model)
    infer = f"/v2/models/{signature.name}/infer"
    form = rng.choices(FORMS, _WEIGHTS)[0]
    if form == "binary":
        return _binary(rng, signature, max_batch_size, infer)
    if form == "huge":
        return _huge(rng, signature, max_body_bytes, infer)
    if form == "http":
        return _http(rng, signature, infer)
    request, _ = _valid(rng, signature, max_batch_size)
    roll = rng.random()
    if roll < 0.12:
        return FuzzRequest("json", "valid", "POST", infer, (("content-type", "application/json"),), _dumps(request))
    if roll < 0.27:
        kind, body = _malformed(rng, _dumps(request))
        return FuzzRequest("json", f"malformed-{kind}", "POST", infer, (("content-type", "application/json"),), body)
    kind = _mutate(rng, request, signature, max_batch_size)
    return FuzzRequest("json", kind, "POST", infer, (("content-type", "application/json"),), _dumps(request))


def make_corpus(model: str, count: int, seed: int = 0, **limits: int) -> list[FuzzRequest]:
    """Return ``count`` requests for ``model`` drawn from ``seed`` (the same seed, the same corpus)."""
    rng = random.Random(f"{model}:{seed}")
    return [make_request(rng, model, **limits) for _ in range(count)]

