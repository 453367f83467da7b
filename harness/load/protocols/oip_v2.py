"""Open Inference Protocol v2 (the KServe/Triton REST protocol, and the reference service's):
``POST /v2/models/{model}/infer``.

Where the bodies come from, first match wins:

- ``bodies_file``: a user's JSONL file of v2 request bodies, one a line (request n takes line ``n % lines``);
- ``inputs``: tensor descriptions ``{name, datatype, shape}`` as a server's model metadata
  (``GET /v2/models/{model}``) gives them (`fetch_inputs`, `with_metadata`: the load reads them from the
  server once, before any generator starts); a dimension of -1 is ``batch_size`` (the first) or 1;
  data is seeded random: floats in [0, 1), integers 0..9, booleans, the string "x" for BYTES;
- a reference model (`harness.service.registry`): valid random inputs of its signature.

Bodies are built once (``variants`` of them, seeds 0..variants-1) and serialised, so senders spend no
CPU on JSON; request n takes body ``n % variants``. Success is HTTP 200 (the base rule).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from harness.errors import ConfigError, HarnessError
from harness.load.protocols.base import Adapter, HttpRequest

__all__ = ["OipV2Adapter", "JSON_HEADERS", "infer_path", "request_bodies", "tensor_bodies", "fetch_inputs",
           "with_metadata"]

JSON_HEADERS = {"Content-Type": "application/json"}
BODY_VARIANTS = 8
METADATA_TIMEOUT_S = 10.0
METADATA_RETRY_S = 0.1  # a metadata read answered 503 (not ready yet) is asked again this often
_FLOATS = {"FP16", "FP32", "FP64", "BF16"}
_INTS = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


def infer_path(model: str) -> str:
    """Return the v2 inference path of ``model``."""
    return f"/v2/models/{model}/infer"


def request_bodies(model: str, batch_size: int = 1, variants: int = BODY_VARIANTS) -> list[bytes]:
    """Return ``variants`` serialised v2 request bodies with valid random inputs (seeds 0..variants-1)."""
    import orjson

    from harness.service.registry import example_request

    return [orjson.dumps(example_request(model, batch_size, seed)) for seed in range(variants)]


def tensor_bodies(inputs: Sequence[dict[str, Any]], batch_size: int = 1, variants: int = BODY_VARIANTS) -> list[bytes]:
    """Return ``variants`` serialised v2 request bodies of seeded random data for tensor descriptions
    ``{name, datatype, shape}``; raise ConfigError naming ``inputs`` for a datatype or shape it cannot fill."""
    import numpy as np
    import orjson

    bodies = []
    for seed in range(variants):
        rng, tensors = np.random.default_rng(seed), []
        for spec in inputs:
            dims = [int(d) for d in spec.get("shape", [])]
            shape = [batch_size if d < 0 and i == 0 else (1 if d < 0 else d) for i, d in enumerate(dims)]
            size, datatype = int(np.prod(shape)) if shape else 1, str(spec.get("datatype", "")).upper()
            if datatype in _FLOATS:
                data: list[Any] = rng.random(size).round(6).tolist()
            elif datatype in _INTS:
                data = rng.integers(0, 10, size).tolist()
            elif datatype == "BOOL":
                data = (rng.random(size) < 0.5).tolist()
            elif datatype == "BYTES":
                data = ["x"] * size
            else:
                raise ConfigError("inputs", dict(spec), f"datatype {datatype!r} is not a v2 datatype the load can fill")
            tensors.append({"name": spec["name"], "shape": shape, "datatype": datatype, "data": data})
        bodies.append(orjson.dumps({"inputs": tensors}))
    return bodies


def fetch_inputs(base_url: str, model: str, timeout_s: float = METADATA_TIMEOUT_S) -> list[dict[str, Any]]:
    """Return the input tensors of ``model`` from the server's metadata (``GET /v2/models/{model}``).

    A 503 (not ready) is asked again every `METADATA_RETRY_S` within ``timeout_s``: the local balancer routes
    to a replica a moment after the platform has seen it Ready, and a server may still be loading its model.
    Raises HarnessError when the server does not answer it with inputs (the URL and what came in the message).
    """
    import time
    import urllib.error
    import urllib.request

    url = f"{base_url.rstrip('/')}/v2/models/{model}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=max(0.1, deadline - time.monotonic())) as response:
                metadata = json.loads(response.read())
            break
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() + METADATA_RETRY_S >= deadline:
                raise HarnessError(f"oip-v2: cannot read model metadata from {url}: {exc}") from exc
            time.sleep(METADATA_RETRY_S)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise HarnessError(f"oip-v2: cannot read model metadata from {url}: {exc}") from exc
    inputs = metadata.get("inputs") if isinstance(metadata, dict) else None
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) and "name" in i for i in inputs):
        raise HarnessError(f"oip-v2: the metadata at {url} lists no inputs: {str(metadata)[:200]}")
    return [{"name": i["name"], "datatype": i.get("datatype", ""), "shape": list(i.get("shape", []))} for i in inputs]


def with_metadata(settings: Any, base_url: str) -> Any:
    """Return oip-v2 ``settings`` (`ProtocolSettings`) with ``inputs`` read from the server at ``base_url``
    when it needs them (`ProtocolSettings.needs_metadata`), else ``settings`` itself. Raises HarnessError."""
    if settings is None or not settings.needs_metadata:
        return settings
    return settings.model_copy(update={"inputs": tuple(fetch_inputs(base_url, settings.reference_model))})


class OipV2Adapter(Adapter):
    """Inference requests of ``batch_size`` rows to ``model`` (see the module docstring for the bodies)."""

    name = "oip-v2"

    def __init__(self, model: str, batch_size: int = 1, *, variants: int = BODY_VARIANTS, path: str | None = None,
                 headers: dict[str, str] | None = None, inputs: Sequence[dict[str, Any]] | None = None,
                 bodies_file: str | None = None) -> None:
        from harness.modelnames import MODEL_NAMES

        self.path = path or infer_path(model)
        self.headers = {**JSON_HEADERS, **(headers or {})}
        if bodies_file is not None:
            from harness.load.protocols.http_json import read_bodies

            self.bodies = read_bodies(bodies_file)
        elif inputs is not None:
            self.bodies = tensor_bodies(inputs, batch_size, variants)
        elif model in MODEL_NAMES:
            self.bodies = request_bodies(model, batch_size, variants)
        else:
            raise ConfigError("model", model, "not a reference model: give its inputs (read from the server's "
                              "GET /v2/models/{name} by harness load) or a bodies file of v2 requests")

    def request(self, n: int) -> HttpRequest:
        return HttpRequest("POST", self.path, self.headers, self.bodies[n % len(self.bodies)])
