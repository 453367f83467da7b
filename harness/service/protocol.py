"""Open Inference Protocol v2 (KServe/Triton REST) messages: parsing requests, encoding responses.

Follows the protocol's JSON schemas ($inference_request, $inference_response, $metadata_model_response,
$metadata_server_response, $repository_index_response) and the binary tensor data extension
(``Inference-Header-Content-Length``, ``binary_data_size``, ``binary_data``, ``binary_data_output``)
that standard clients such as ``tritonclient.http`` use by default. The request path avoids Python
loops over tensor elements: JSON arrays go through one ``np.asarray``, binary data through
``np.frombuffer``, and responses through orjson's native numpy serialisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from harness import __version__
from harness.service.registry import ModelSignature

__all__ = [
    "SERVER_NAME",
    "EXTENSIONS",
    "HEADER_LENGTH",
    "ProtocolError",
    "InferRequest",
    "parse_infer_request",
    "encode_infer_response",
    "server_metadata",
    "model_metadata",
    "error_body",
]

SERVER_NAME = "harness-reference"
EXTENSIONS = ["model_repository", "binary_tensor_data", "harness_faults"]
HEADER_LENGTH = "inference-header-content-length"
_NUMPY = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2"), "FP64": np.dtype("<f8"), "INT64": np.dtype("<i8"), "INT32": np.dtype("<i4")}
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class ProtocolError(Exception):
    """A request the protocol refuses: ``status`` (400, 404, 413, ...) and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class InferRequest:
    """A validated inference request: inputs as numpy arrays with a common batch size."""

    arrays: dict[str, np.ndarray]
    batch: int
    id: str | None = None
    binary_outputs: set[str] = field(default_factory=set)
    requested_outputs: list[str] | None = None


def error_body(message: str) -> bytes:
    """Return the protocol's error object ``{"error": message}`` as JSON bytes."""
    return orjson.dumps({"error": message})


def _params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError(400, f"{where}.parameters must be an object, got {type(params).__name__}")
    return params


def _decode_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    binary = memoryview(b"")
    json_part = body
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise ProtocolError(400, f"Inference-Header-Content-Length={header_length!r}: not an integer") from None
        if not 0 < length <= len(body):
            raise ProtocolError(400, f"Inference-Header-Content-Length={length}: outside the body's {len(body)} bytes")
        json_part, binary = body[:length], memoryview(body)[length:]
    try:
        request = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(400, f"malformed JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ProtocolError(400, f"request body must be a JSON object, got {type(request).__name__}")
    return request, binary


def _tensor(entry: Any, index: int, spec_by_name: dict[str, Any], binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    where = f"inputs[{index}]"
    if not isinstance(entry, dict):
        raise ProtocolError(400, f"{where} must be an object")
    name = entry.get("name")
    spec = spec_by_name.get(name)
    if spec is None:
        raise ProtocolError(400, f"{where}.name={name!r}: unknown input; expected one of {sorted(spec_by_name)}")
    datatype = entry.get("datatype")
    if datatype != spec.datatype:
        raise ProtocolError(400, f"input {name!r}: datatype={datatype!r}, expected {spec.datatype!r}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise ProtocolError(400, f"input {name!r}: shape={shape!r} must be a non-empty list of non-negative integers")
    if tuple(shape[1:]) != spec.shape or shape[0] < 1:
        expected = [-1, *spec.shape]
        raise ProtocolError(400, f"input {name!r}: shape={shape!r} does not match the model's {expected} (batch first)")
    count = int(np.prod(shape))
    dtype = _NUMPY[spec.datatype]
    size = _params(entry, where).get("binary_data_size")
    if size is not None:
        if type(size) is not int or size != count * dtype.itemsize:
            raise ProtocolError(400, f"input {name!r}: binary_data_size={size!r}, expected {count * dtype.itemsize} for shape {shape}")
        if offset + size > len(binary):
            raise ProtocolError(400, f"input {name!r}: binary_data_size={size} runs past the end of the body")
        array = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
        return name, array, offset + size
    if "data" not in entry:
        raise ProtocolError(400, f"input {name!r}: has no 'data' (nor binary_data_size)")
    try:
        array = np.asarray(entry["data"])
    except (ValueError, TypeError) as exc:
        raise ProtocolError(400, f"input {name!r}: data is not a rectangular numeric array: {exc}") from None
    integer = spec.datatype.startswith("INT")
    if array.dtype.kind not in ("iu" if integer else "iuf") or array.size != count:
        what = "integers" if integer else "numbers"
        raise ProtocolError(400, f"input {name!r}: data must hold {count} {what} for shape {shape}, got {array.size} of {array.dtype}")
    return name, array.astype(dtype, copy=False).reshape(shape), offset


def parse_infer_request(body: bytes, signature: ModelSignature, max_batch_size: int, header_length: str | None = None) -> InferRequest:
    """Return the validated request; raise ProtocolError(400) naming the bad field and value."""
    request, binary = _decode_body(body, header_length)
    entries = request.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise ProtocolError(400, "missing 'inputs': expected a non-empty list of tensors")
    spec_by_name = {spec.name: spec for spec in signature.inputs}
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, entry in enumerate(entries):
        name, array, offset = _tensor(entry, index, spec_by_name, binary, offset)
        if name in arrays:
            raise ProtocolError(400, f"input {name!r}: given twice")
        arrays[name] = array
    missing = [name for name in spec_by_name if name not in arrays]
    if missing:
        raise ProtocolError(400, f"missing input(s) {missing}")
    batches = {array.shape[0] for array in arrays.values()}
    if len(batches) != 1:
        raise ProtocolError(400, f"inputs disagree on the batch size: {sorted(batches)}")
    batch = batches.pop()
    if batch > max_batch_size:
        raise ProtocolError(400, f"batch size {batch} exceeds max_batch_size={max_batch_size}")
    for spec in signature.inputs:
        if spec.datatype.startswith("INT") and spec.high > spec.low:
            values = arrays[spec.name]
            low, high = int(values.min()), int(values.max())
            if low < spec.low or high >= spec.high:
                raise ProtocolError(400, f"input {spec.name!r}: values must lie in [{int(spec.low)}, {int(spec.high)}), got {low}..{high}")
    return InferRequest(arrays, batch, *_outputs(request, signature))


def _outputs(request: dict[str, Any], signature: ModelSignature) -> tuple[str | None, set[str], list[str] | None]:
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(400, f"id={request_id!r} must be a string")
    names = [spec.name for spec in signature.outputs]
    binary = set(names) if _params(request, "request").get("binary_data_output") is True else set()
    requested = request.get("outputs")
    if requested is None:
        return request_id, binary, None
    if not isinstance(requested, list):
        raise ProtocolError(400, f"outputs must be a list, got {type(requested).__name__}")
    chosen = []
    for index, entry in enumerate(requested):
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in names:
            raise ProtocolError(400, f"outputs[{index}].name={name!r}: unknown output; expected one of {names}")
        chosen.append(name)
        flag = _params(entry, f"outputs[{index}]").get("binary_data")
        if flag is True:
            binary.add(name)
        elif flag is False:
            binary.discard(name)
    return request_id, binary, chosen


def encode_infer_response(
    model: str, version: str, request: InferRequest, outputs: dict[str, np.ndarray], signature: ModelSignature
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Return ``(body, extra_headers)`` of the $inference_response for one request's outputs."""
    datatype = {spec.name: spec.datatype for spec in signature.outputs}
    names = request.requested_outputs or list(outputs)
    tensors = []
    blobs = []
    for name in names:
        array = outputs[name]
        tensor: dict[str, Any] = {"name": name, "datatype": datatype[name], "shape": list(array.shape)}
        if name in request.binary_outputs:
            blob = np.ascontiguousarray(array, dtype=_NUMPY[datatype[name]]).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = np.ascontiguousarray(array).ravel()
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": tensors}
    if request.id is not None:
        response["id"] = request.id
    header = orjson.dumps(response, option=_JSON_OPTIONS)
    if not blobs:
        return header, [(b"content-type", b"application/json")]
    headers = [(b"content-type", b"application/octet-stream"), (HEADER_LENGTH.encode(), str(len(header)).encode())]
    return b"".join([header, *blobs]), headers


def server_metadata() -> dict[str, Any]:
    """Return the $metadata_server_response."""
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


def model_metadata(signature: ModelSignature) -> dict[str, Any]:
    """Return the $metadata_model_response (shapes batch first, -1 for the variable batch dimension)."""

    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype, "shape": [-1, *s.shape]} for s in specs]

    return {
        "name": signature.name,
        "versions": [signature.version],
        "platform": signature.platform,
        "inputs": tensors(signature.inputs),
        "outputs": tensors(signature.outputs),
    }
