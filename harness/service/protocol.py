"""Open Inference Protocol v2 (KServe/Triton REST) messages: parsing requests, encoding responses.

Follows the protocol's JSON schemas ($inference_request, $inference_response, $metadata_model_response,
$metadata_server_response, $repository_index_response) and the binary tensor data extension
(``Inference-Header-Content-Length``, ``binary_data_size``, ``binary_data``, ``binary_data_output``)
that standard clients such as ``tritonclient.http`` use by default. The request path avoids Python
loops over tensor elements: JSON arrays go through one ``np.asarray``, binary data through
``np.frombuffer``, and responses through orjson's native numpy serialisation.
"""

from __future__ import annotations

import math
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
    "show_value",
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


def show_value(value: Any, limit: int = 60) -> str:
    """Return ``repr(value)`` cut to ``limit`` characters: a hostile value must not make a huge error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_show = show_value


def _params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(400, f"{where}.parameters={_show(params)}: must be an object, got {type(params).__name__}")
    return params


def _header_length(value: str, body_size: int) -> int:
    # int() would take " 12", "+12" and "1_2": the header is plain decimal digits or it is refused
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise ProtocolError(400, f"Inference-Header-Content-Length={_show(value)}: not a decimal byte count")
    length = int(value)
    if not 0 < length <= body_size:
        raise ProtocolError(400, f"Inference-Header-Content-Length={length}: outside the body's {body_size} bytes")
    return length


def _decode_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    binary = memoryview(b"")
    json_part = body
    if header_length is not None:
        length = _header_length(header_length, len(body))
        json_part, binary = body[:length], memoryview(body)[length:]
    try:
        request = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(400, f"malformed JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ProtocolError(400, f"request body must be a JSON object, got {type(request).__name__}")
    return request, binary


def _shape(name: str, shape: Any, spec: Any, max_batch_size: int) -> list[int]:
    # validated before any arithmetic: element counts are Python ints, never numpy products that wrap
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise ProtocolError(400, f"input {name!r}: shape={_show(shape)} must be a non-empty list of non-negative integers")
    if tuple(shape[1:]) != spec.shape or shape[0] < 1:
        raise ProtocolError(400, f"input {name!r}: shape={_show(shape)} does not match the model's {[-1, *spec.shape]} (batch first)")
    if shape[0] > max_batch_size:
        raise ProtocolError(400, f"input {name!r}: shape={_show(shape)}: batch size {shape[0]} exceeds max_batch_size={max_batch_size}")
    return shape


def _binary_tensor(name: str, size: Any, shape: list[int], dtype: np.dtype, binary: memoryview, offset: int) -> np.ndarray:
    expected = math.prod(shape) * dtype.itemsize
    if type(size) is not int or size != expected:
        raise ProtocolError(400, f"input {name!r}: parameters.binary_data_size={_show(size)}, expected {expected} for shape {shape}")
    if offset + size > len(binary):
        raise ProtocolError(400, f"input {name!r}: parameters.binary_data_size={size} runs past the end of the body "
                                 f"({len(binary) - offset} binary bytes left)")
    return np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)


def _check_range(name: str, array: np.ndarray, spec: Any) -> None:
    # integer inputs (token ids) have a valid range; a value outside it would index past an embedding
    if spec.datatype.startswith("INT") and spec.high > spec.low:
        low, high = int(array.min()), int(array.max())
        if low < spec.low or high >= spec.high:
            raise ProtocolError(400, f"input {name!r}: values must lie in [{int(spec.low)}, {int(spec.high)}), got {low}..{high}")


def _json_tensor(name: str, data: Any, shape: list[int], spec: Any) -> np.ndarray:
    count = math.prod(shape)
    integer = spec.datatype.startswith("INT")
    what = "integers" if integer else "numbers"
    if not isinstance(data, list):
        raise ProtocolError(400, f"input {name!r}: data={_show(data)}: must hold {count} {what} for shape {shape}, as a (nested) list")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(400, f"input {name!r}: data is not a rectangular numeric array: {exc}") from None
    if array.dtype.kind not in ("iu" if integer else "iuf") or array.size != count:
        raise ProtocolError(400, f"input {name!r}: data must hold {count} {what} for shape {shape}, got {array.size} of {array.dtype}")
    _check_range(name, array, spec)  # before the cast, so values past int64 cannot wrap into range
    with np.errstate(over="ignore", invalid="ignore"):
        cast = array.astype(_NUMPY[spec.datatype], copy=False).reshape(shape)
    if not integer and not np.isfinite(cast).all():  # JSON numbers are finite: one past the datatype's range is a client error
        raise ProtocolError(400, f"input {name!r}: data holds values beyond {spec.datatype}'s range (max {float(np.finfo(cast.dtype).max):.3g})")
    return cast


def _tensor(entry: Any, index: int, spec_by_name: dict[str, Any], binary: memoryview, offset: int, max_batch_size: int) -> tuple[str, np.ndarray, int]:
    where = f"inputs[{index}]"
    if not isinstance(entry, dict):
        raise ProtocolError(400, f"{where}={_show(entry)}: must be an object")
    name = entry.get("name")
    if not isinstance(name, str) or name not in spec_by_name:
        raise ProtocolError(400, f"{where}.name={_show(name)}: unknown input; expected one of {sorted(spec_by_name)}")
    spec = spec_by_name[name]
    datatype = entry.get("datatype")
    if datatype != spec.datatype:
        raise ProtocolError(400, f"input {name!r}: datatype={_show(datatype)}, expected {spec.datatype!r}")
    shape = _shape(name, entry.get("shape"), spec, max_batch_size)
    size = _params(entry, where).get("binary_data_size")
    if size is not None:
        array = _binary_tensor(name, size, shape, _NUMPY[spec.datatype], binary, offset)
        _check_range(name, array, spec)
        return name, array, offset + size
    if "data" not in entry:
        raise ProtocolError(400, f"input {name!r}: has no 'data' (nor parameters.binary_data_size)")
    return name, _json_tensor(name, entry["data"], shape, spec), offset


def parse_infer_request(body: bytes, signature: ModelSignature, max_batch_size: int, header_length: str | None = None) -> InferRequest:
    """Return the validated request; raise ProtocolError(400) naming the bad field and value.

    Every field's type is checked before it is used, and element counts are computed on Python ints
    after the batch size is bounded, so no shape can overflow or allocate more than the body holds.
    """
    request, binary = _decode_body(body, header_length)
    entries = request.get("inputs")
    if entries is None:
        raise ProtocolError(400, "missing 'inputs': expected a non-empty list of tensors")
    if not isinstance(entries, list) or not entries:
        raise ProtocolError(400, f"inputs={_show(entries)}: must be a non-empty list of tensors")
    spec_by_name = {spec.name: spec for spec in signature.inputs}
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, entry in enumerate(entries):
        name, array, offset = _tensor(entry, index, spec_by_name, binary, offset, max_batch_size)
        if name in arrays:
            raise ProtocolError(400, f"inputs[{index}].name={name!r}: input given twice")
        arrays[name] = array
    if offset != len(binary):
        raise ProtocolError(400, f"{len(binary) - offset} bytes of binary data after the JSON header belong to no input's binary_data_size")
    missing = [name for name in spec_by_name if name not in arrays]
    if missing:
        raise ProtocolError(400, f"missing input(s) {missing}")
    batches = {array.shape[0] for array in arrays.values()}
    if len(batches) != 1:
        raise ProtocolError(400, f"inputs disagree on the batch size: {sorted(batches)}")
    return InferRequest(arrays, batches.pop(), *_outputs(request, signature))


def _outputs(request: dict[str, Any], signature: ModelSignature) -> tuple[str | None, set[str], list[str] | None]:
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(400, f"id={_show(request_id)}: must be a string")
    names = [spec.name for spec in signature.outputs]
    flag = _params(request, "request").get("binary_data_output")
    if flag is not None and not isinstance(flag, bool):
        raise ProtocolError(400, f"parameters.binary_data_output={_show(flag)}: must be a boolean")
    binary = set(names) if flag else set()
    requested = request.get("outputs")
    if requested is None:
        return request_id, binary, None
    if not isinstance(requested, list):
        raise ProtocolError(400, f"outputs={_show(requested)}: must be a list, got {type(requested).__name__}")
    chosen = []
    for index, entry in enumerate(requested):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name not in names:
            raise ProtocolError(400, f"outputs[{index}].name={_show(name)}: unknown output; expected one of {names}")
        chosen.append(name)
        flag = _params(entry, f"outputs[{index}]").get("binary_data")
        if flag is not None and not isinstance(flag, bool):
            raise ProtocolError(400, f"outputs[{index}].parameters.binary_data={_show(flag)}: must be a boolean")
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
