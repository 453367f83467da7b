"""Open Inference Protocol v2 messages: JSON and binary tensors in, responses out, bad input named."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from harness.service.protocol import ProtocolError, encode_infer_response, model_metadata, parse_infer_request
from harness.service.registry import MODELS, example_request

TINY = MODELS["tiny-mlp"]
TEXT = MODELS["text-encoder"]


def test_json_request_is_parsed_into_a_batch() -> None:
    body = orjson.dumps({"id": "r1", **example_request("tiny-mlp", batch=3)})
    request = parse_infer_request(body, TINY, max_batch_size=8)
    assert request.batch == 3 and request.id == "r1"
    assert request.arrays["features"].shape == (3, 32) and request.arrays["features"].dtype == np.float32


def test_nested_data_is_accepted_as_row_major() -> None:
    data = np.arange(64, dtype=np.float32).reshape(2, 32)
    body = orjson.dumps({"inputs": [{"name": "features", "shape": [2, 32], "datatype": "FP32", "data": data.tolist()}]})
    request = parse_infer_request(body, TINY, max_batch_size=8)
    assert np.array_equal(request.arrays["features"], data)


def test_binary_tensor_extension_round_trip() -> None:
    data = np.random.default_rng(0).standard_normal((2, 32)).astype(np.float32)
    header = orjson.dumps(
        {
            "inputs": [{"name": "features", "shape": [2, 32], "datatype": "FP32", "parameters": {"binary_data_size": data.nbytes}}],
            "outputs": [{"name": "scores", "parameters": {"binary_data": True}}],
        }
    )
    request = parse_infer_request(header + data.tobytes(), TINY, 8, header_length=str(len(header)))
    assert np.array_equal(request.arrays["features"], data)
    outputs = {"scores": np.ones((2, 4), dtype=np.float32)}
    body, headers = encode_infer_response("tiny-mlp", "1", request, outputs, TINY)
    length = int(dict(headers)[b"inference-header-content-length"])
    response = orjson.loads(body[:length])
    assert response["outputs"][0]["parameters"]["binary_data_size"] == 32
    assert np.array_equal(np.frombuffer(body[length:], dtype=np.float32).reshape(2, 4), outputs["scores"])


def test_json_response_follows_the_schema() -> None:
    request = parse_infer_request(orjson.dumps({"id": "x", **example_request("tiny-mlp", 1)}), TINY, 8)
    body, headers = encode_infer_response("tiny-mlp", "1", request, {"scores": np.zeros((1, 4), np.float32)}, TINY)
    response = orjson.loads(body)
    assert response == {
        "model_name": "tiny-mlp",
        "model_version": "1",
        "id": "x",
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [1, 4], "data": [0.0, 0.0, 0.0, 0.0]}],
    }
    assert dict(headers)[b"content-type"] == b"application/json"


def test_model_metadata_has_the_protocol_fields() -> None:
    metadata = model_metadata(TEXT)
    assert set(metadata) == {"name", "versions", "platform", "inputs", "outputs"}
    assert metadata["inputs"] == [{"name": "input_ids", "datatype": "INT64", "shape": [-1, 32]}]


def _entry(**changes: object) -> bytes:
    entry = {"name": "features", "shape": [1, 32], "datatype": "FP32", "data": [0.0] * 32, **changes}
    return orjson.dumps({"inputs": [entry]})


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{nope", "malformed JSON"),
        (b"[]", "must be a JSON object"),
        (b"{}", "missing 'inputs'"),
        (_entry(name="x"), "name='x': unknown input"),
        (_entry(datatype="FP64"), "datatype='FP64', expected 'FP32'"),
        (_entry(shape=[1, 31]), r"shape=\[1, 31\] does not match"),
        (_entry(shape="1x32"), "must be a non-empty list"),
        (_entry(data=[0.0] * 31), "must hold 32 numbers"),
        (_entry(data=["a"] * 32), "must hold 32 numbers"),
        (_entry(data=[[0.0] * 3, [0.0]]), "data"),
        (_entry(shape=[9, 32], data=[0.0] * 288), "exceeds max_batch_size=8"),
        (_entry(data=None), "must hold 32 numbers"),
        (_entry(name=["features"]), r"inputs\[0\].name=\['features'\]: unknown input"),
        (_entry(name={"features": 1}), r"inputs\[0\].name=\{'features': 1\}: unknown input"),
        (_entry(name=None), "inputs\\[0\\].name=None: unknown input"),
        (_entry(datatype=["FP32"]), r"datatype=\['FP32'\], expected 'FP32'"),
        (_entry(shape=[576460752303423488, 32], data=[]), "batch size 576460752303423488 exceeds max_batch_size=8"),
        (_entry(shape=[2**63 - 1, 32], data=[0]), "exceeds max_batch_size=8"),
        (_entry(shape=[True, 32]), "must be a non-empty list of non-negative integers"),
        (_entry(shape=[1.0, 32]), "must be a non-empty list of non-negative integers"),
        (_entry(data=[1e39] * 32), "beyond FP32's range"),
        (_entry(data="0" * 32), "data='00000"),
        (_entry(parameters=[1]), r"inputs\[0\].parameters=\[1\]: must be an object"),
        (_entry(parameters={"binary_data_size": "128"}), "binary_data_size='128', expected 128"),
        (orjson.dumps({"inputs": [{"name": "features", "shape": [1, 32], "datatype": "FP32", "data": [0.0] * 32}], "id": 7}), "id=7: must be a string"),
        (orjson.dumps({"inputs": [{"name": "features", "shape": [1, 32], "datatype": "FP32", "data": [0.0] * 32}],
                       "parameters": {"binary_data_output": "yes"}}), "binary_data_output='yes': must be a boolean"),
        (orjson.dumps({"inputs": [{"name": "features", "shape": [1, 32], "datatype": "FP32", "data": [0.0] * 32}],
                       "outputs": [{"name": ["scores"]}]}), r"outputs\[0\].name=\['scores'\]: unknown output"),
        (orjson.dumps({"inputs": {"name": "features"}}), "inputs=.*: must be a non-empty list"),
        (_entry(name="x" * 500), r"name='xxxx.*\.\.\.: unknown input"),  # hostile values are quoted cut short
    ],
)
def test_bad_requests_are_refused_naming_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        parse_infer_request(body, TINY, max_batch_size=8)
    assert caught.value.status == 400


def test_token_ids_out_of_vocabulary_are_refused() -> None:
    body = orjson.dumps({"inputs": [{"name": "input_ids", "shape": [1, 32], "datatype": "INT64", "data": [8000] * 32}]})
    with pytest.raises(ProtocolError, match=r"values must lie in \[0, 8000\)"):
        parse_infer_request(body, TEXT, max_batch_size=8)
    floats = orjson.dumps({"inputs": [{"name": "input_ids", "shape": [1, 32], "datatype": "INT64", "data": [1.5] * 32}]})
    with pytest.raises(ProtocolError, match="must hold 32 integers"):
        parse_infer_request(floats, TEXT, max_batch_size=8)


def test_binary_size_must_match_the_shape() -> None:
    header = orjson.dumps({"inputs": [{"name": "features", "shape": [1, 32], "datatype": "FP32", "parameters": {"binary_data_size": 64}}]})
    with pytest.raises(ProtocolError, match="binary_data_size=64, expected 128"):
        parse_infer_request(header + bytes(64), TINY, 8, header_length=str(len(header)))
    with pytest.raises(ProtocolError, match="Inference-Header-Content-Length=999"):
        parse_infer_request(header, TINY, 8, header_length="999")


def _binary(shape: list, size: object, blob: bytes, datatype: str = "FP32", name: str = "features") -> tuple[bytes, str]:
    header = orjson.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}]})
    return header + blob, str(len(header))


@pytest.mark.parametrize(
    "shape, size, blob, header_length, message",
    [
        ([576460752303423488, 32], 0, b"", None, "exceeds max_batch_size=8"),  # the element count would wrap to 0 in int64
        ([2**59, 32], 0, b"", None, "exceeds max_batch_size=8"),
        ([1, 32], 128, bytes(129), None, "1 bytes of binary data after the JSON header belong to no input"),
        ([1, 32], 128, bytes(100), None, "runs past the end of the body"),
        ([1, 32], -1, bytes(128), None, "binary_data_size=-1, expected 128"),
        ([1, 32], 128, bytes(128), "+10", "Inference-Header-Content-Length='\\+10': not a decimal byte count"),
        ([1, 32], 128, bytes(128), "1_0", "not a decimal byte count"),
        ([1, 32], 128, bytes(128), "\u00b2", "not a decimal byte count"),
        ([1, 32], 128, bytes(128), "0", "Inference-Header-Content-Length=0: outside the body"),
        ([1, 32], 128, bytes(128), "9" * 30, "not a decimal byte count"),
    ],
)
def test_lying_binary_requests_are_refused_naming_the_header_or_field(shape: list, size: object, blob: bytes, header_length: str | None, message: str) -> None:
    body, length = _binary(shape, size, blob)
    with pytest.raises(ProtocolError, match=message) as caught:
        parse_infer_request(body, TINY, 8, header_length=header_length or length)
    assert caught.value.status == 400


def test_binary_token_ids_out_of_vocabulary_are_refused() -> None:
    body, length = _binary([1, 32], 256, np.full(32, 8000, dtype="<i8").tobytes(), "INT64", "input_ids")
    with pytest.raises(ProtocolError, match=r"values must lie in \[0, 8000\), got 8000..8000"):
        parse_infer_request(body, TEXT, 8, header_length=length)


def test_integers_past_int64_are_refused_before_they_could_wrap_into_range() -> None:
    body = b'{"inputs": [{"name": "input_ids", "shape": [1, 32], "datatype": "INT64", "data": [' + b",".join([b"18446744073709551615"] * 32) + b"]}]}"
    with pytest.raises(ProtocolError, match="values must lie in"):
        parse_infer_request(body, TEXT, 8)
