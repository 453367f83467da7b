"""The protocol adapters without a network: requests built from settings, responses read into records'
fields, streams however the transport splits them, and bad settings as one-line errors naming the field."""

from __future__ import annotations

import json
import math

import pytest

from harness.errors import ConfigError
from harness.load.protocols import ProtocolSettings, build_adapter, protocol_settings
from harness.load.protocols.base import timed_lines
from harness.request_records import RequestRecord, read_records, write_records


def _sse(*events: object) -> list[bytes]:
    return [b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events]


def _chat(text: str | None = None, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {} if text is None else {"content": text}, "finish_reason": finish}]}


STREAM = _sse({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, _chat("a"), _chat("b"), _chat("c"),
              _chat(None, "stop"), {"choices": [], "usage": {"completion_tokens": 3}}, b"[DONE]")
TIMES = [5.0, 50.0, 70.0, 95.0, 96.0, 96.5, 97.0]  # ms since the intended send time


def _chat_adapter(**fields):
    return build_adapter(ProtocolSettings(protocol="openai-chat", model="tiny", **fields))


def test_a_stream_is_read_into_ttft_gaps_tokens_and_tpot():
    reading = _chat_adapter().read(200, list(zip(TIMES, STREAM)), latency_ms=100.0)
    assert reading.ok and reading.error == ""
    assert reading.ttft_ms == 50.0  # the role-only chunk carries no text: not the first token
    assert reading.itl_ms == (20.0, 25.0)
    assert reading.output_tokens == 3  # the server's usage
    assert reading.tpot_ms == pytest.approx((100.0 - 50.0) / (3 - 1))


def test_the_same_stream_split_anywhere_reads_the_same():
    whole = b"".join(STREAM)
    # byte by byte, each byte timed as the piece that completed a line would be
    pieces, at = [], 0
    for text, t in zip(STREAM, TIMES):
        pieces.extend((t, whole[at + i:at + i + 1]) for i in range(len(text)))
        at += len(text)
    adapter = _chat_adapter()
    assert adapter.read(200, pieces, 100.0) == adapter.read(200, list(zip(TIMES, STREAM)), 100.0)
    lines, rest = timed_lines([(1.0, b"data: x\r\nda"), (2.0, b"ta: y\n"), (3.0, b"tail")])
    assert lines == [(1.0, b"data: x"), (2.0, b"data: y")] and rest == b"tail"


def test_without_usage_the_output_events_are_the_tokens():
    stream = [p for p in STREAM if b"usage" not in p]
    reading = _chat_adapter().read(200, list(zip(TIMES, stream)), 100.0)
    assert reading.ok and reading.output_tokens == 3


def test_a_usage_below_the_output_events_is_no_count_and_the_events_are_taken():
    # LitServe's OpenAISpec ends every stream with usage {completion_tokens: 0} unless the model counts them
    litserve = _sse(_chat("a"), _chat("b"), _chat("c"), {**_chat(None, "stop"), "usage": {"completion_tokens": 0}},
                    b"[DONE]")
    reading = _chat_adapter().read(200, list(zip(TIMES[1:], litserve)), 100.0)
    assert reading.ok and reading.output_tokens == 3 and reading.tpot_ms == pytest.approx((100.0 - 50.0) / 2)
    # a usage above them stands: a server may send several tokens in one event
    packed = [p.replace(b'"completion_tokens": 3', b'"completion_tokens": 6') for p in STREAM]
    assert _chat_adapter().read(200, list(zip(TIMES, packed)), 100.0).output_tokens == 6


@pytest.mark.parametrize("drop, error, why", [
    (b"[DONE]", "", "without data: [DONE]"),
    (b"finish_reason\": \"stop", "", "without a finish_reason"),
    (b"[DONE]", "ClientPayloadError: Response payload is not completed", "ClientPayloadError"),
])
def test_a_cut_stream_is_a_failure_that_keeps_what_came(drop, error, why):
    kept = [(t, p) for t, p in zip(TIMES, STREAM) if drop not in p]
    reading = _chat_adapter().read(200, kept, 100.0, error)
    assert not reading.ok and reading.status == 200
    assert reading.error.startswith("stream cut after 3 output event(s)") and why in reading.error
    assert reading.ttft_ms == 50.0  # kept for the record; the statistics use successful requests only


def test_error_events_statuses_and_bad_json_are_failures():
    adapter = _chat_adapter()
    assert adapter.read(200, [(1.0, b"data: {\"error\": {\"message\": \"overloaded\"}}\n\n")], 2.0).error \
        .startswith("error in the stream")
    assert adapter.read(200, [(1.0, b"data: {not json\n\n")], 2.0).error.startswith("a stream event is not JSON")
    failed = adapter.read(503, [(1.0, b"{}")], 2.0)
    assert not failed.ok and failed.status == 503 and failed.error == "HTTP 503"
    assert adapter.read(0, [], 2.0, "timeout after 5 s").error == "timeout after 5 s"


def test_a_whole_answer_is_its_own_first_token():
    adapter = build_adapter(ProtocolSettings(protocol="openai-completions", stream=False, max_tokens=7))
    body = json.loads(adapter.request(0).body)
    assert body == {"prompt": body["prompt"], "max_tokens": 7, "stream": False} and adapter.request(0).path == "/v1/completions"
    answer = json.dumps({"choices": [{"text": "x y", "finish_reason": "length"}], "usage": {"completion_tokens": 7}})
    reading = adapter.read(200, [(80.0, answer.encode())], 80.0)
    assert reading.ok and reading.ttft_ms == 80.0 and reading.output_tokens == 7
    assert math.isnan(reading.tpot_ms) and reading.itl_ms == ()
    assert not adapter.read(200, [(80.0, b'{"choices": []}')], 80.0).ok


def test_chat_requests_ask_for_a_stream_with_usage():
    request = _chat_adapter(max_tokens=5, prompt="hi").request(3)
    assert (request.method, request.path, request.stream) == ("POST", "/v1/chat/completions", True)
    assert json.loads(request.body) == {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                        "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}}


def test_oip_v2_is_the_default_protocol_and_cycles_its_bodies():
    adapter = build_adapter(protocol_settings(None))
    first, ninth = adapter.request(0), adapter.request(8)
    assert first.path == "/v2/models/ranker-mlp/infer" and first.body == ninth.body != adapter.request(1).body
    assert json.loads(first.body)["inputs"][0]["datatype"]
    assert adapter.read(200, [(3.0, b"{}")], 3.0).ok and not adapter.read(500, [], 3.0).ok


def test_http_json_fills_its_template_and_judges_by_status_and_field(tmp_path):
    adapter = build_adapter(ProtocolSettings(protocol="http-json", path="/predict", body_template='{"id": $n, "x": "$$1"}',
                                             success_status=(200, 201), success_field="result.0.score"))
    assert json.loads(adapter.request(41).body) == {"id": 41, "x": "$1"}
    good = json.dumps({"result": [{"score": 0.3}]}).encode()
    assert adapter.read(201, [(1.0, good)], 1.0).ok
    assert adapter.read(200, [(1.0, b'{"result": []}')], 1.0).error == "the answer has no field result.0.score"
    assert adapter.read(404, [(1.0, good)], 1.0).error == "HTTP 404"
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    cycling = build_adapter(ProtocolSettings(protocol="http-json", path="/p", method="put", bodies_file=str(bodies)))
    assert [cycling.request(n).body for n in range(3)] == [b'{"a": 1}', b'{"a": 2}', b'{"a": 1}']
    assert cycling.request(0).method == "PUT"


@pytest.mark.parametrize("fields, field, shown", [
    ({"protocol": "grpc"}, "protocol", "'grpc'"),
    ({"protocol": "http-json"}, "path", "None"),
    ({"protocol": "http-json", "path": "predict"}, "path", "'predict'"),
    ({"protocol": "http-json", "path": "/p", "method": "BREW"}, "method", "'BREW'"),
    ({"protocol": "openai-chat", "body_template": "{}"}, "body_template", "'{}'"),
    ({"protocol": "openai-chat", "inputs": [{"name": "x"}]}, "inputs", "({'name': 'x'},)"),
    ({"protocol": "openai-completions", "success_status": [201]}, "success_status", "(201,)"),
    ({"protocol": "oip-v2", "method": "GET"}, "method", "'GET'"),
    ({"protocol": "http-json", "path": "/p", "success_status": [700]}, "success_status", "[700]"),
])
def test_bad_settings_are_one_line_naming_the_field_and_value(fields, field, shown):
    with pytest.raises(ConfigError) as info:
        protocol_settings(fields)
    assert info.value.field == field and "\n" not in str(info.value) and f"{field}={shown}" in str(info.value)


def test_bad_templates_and_bodies_files_are_one_line_naming_the_field(tmp_path):
    for template, reason in (('{"id": $m}', "unknown placeholder $m"), ('{"id": $}', "malformed placeholder"),
                             ('{"id": n}', "not JSON once $n is filled in")):
        with pytest.raises(ConfigError) as info:
            build_adapter(ProtocolSettings(protocol="http-json", path="/p", body_template=template))
        assert info.value.field == "body_template" and reason in str(info.value) and "\n" not in str(info.value)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    for path, text in ((bad, f"bodies_file='{bad}:2': line 2 is not JSON"), (tmp_path / "none.jsonl", "cannot be read"),
                       (tmp_path / "empty.jsonl", "holds no body")):
        if path.name == "empty.jsonl":
            path.write_text("\n\n", encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            build_adapter(ProtocolSettings(protocol="http-json", path="/p", bodies_file=str(path)))
        assert info.value.field == "bodies_file" and text in str(info.value) and "\n" not in str(info.value)


def test_records_keep_the_token_fields_and_old_files_still_load(tmp_path):
    record = RequestRecord(1.0, 1.0, 100.0, 200, True, ttft_ms=50.0, tpot_ms=25.0, output_tokens=3, itl_ms=(20.0, 25.5))
    path = tmp_path / "requests.csv"
    write_records(path, [record, RequestRecord(2.0, 2.0, 5.0, 200, True)], RequestRecord)
    again = list(read_records(path, RequestRecord))
    assert again[0] == record and again[1].itl_ms == () and math.isnan(again[1].ttft_ms)
    old = tmp_path / "old.csv"
    old.write_text("intended_s,sent_s,latency_ms,status,ok,error,source,target\n1.0,1.0,9.5,200,1,,rate,\n", encoding="utf-8")
    (loaded,) = read_records(old, RequestRecord)
    assert loaded.latency_ms == 9.5 and loaded.output_tokens == 0 and math.isnan(loaded.tpot_ms)


def test_oip_v2_to_any_model_from_its_metadata_or_a_bodies_file(tmp_path):
    with pytest.raises(ConfigError) as info:  # neither a reference model nor its inputs: refused by name
        build_adapter(ProtocolSettings(model="resnet"))
    assert info.value.field == "model" and "not a reference model" in str(info.value)
    settings = ProtocolSettings(model="resnet", batch_size=2)
    assert settings.needs_metadata and not ProtocolSettings().needs_metadata
    inputs = [{"name": "img", "datatype": "FP32", "shape": [-1, 3]}, {"name": "k", "datatype": "INT64", "shape": [1]}]
    adapter = build_adapter(settings.model_copy(update={"inputs": tuple(inputs)}))
    body = json.loads(adapter.request(0).body)
    assert adapter.request(0).path == "/v2/models/resnet/infer"
    assert [(t["name"], t["shape"], t["datatype"], len(t["data"])) for t in body["inputs"]] == \
        [("img", [2, 3], "FP32", 6), ("k", [1], "INT64", 1)]
    assert adapter.request(1).body != adapter.request(0).body == adapter.request(8).body  # seeded variants
    with pytest.raises(ConfigError, match="datatype 'COMPLEX'"):
        build_adapter(settings.model_copy(update={"inputs": ({"name": "z", "datatype": "COMPLEX", "shape": [1]},)}))
    bodies = tmp_path / "v2.jsonl"
    bodies.write_text('{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1.0]}]}\n', encoding="utf-8")
    from_file = build_adapter(ProtocolSettings(model="resnet", bodies_file=str(bodies)))
    assert json.loads(from_file.request(5).body)["inputs"][0]["name"] == "a"


def test_the_cli_offers_exactly_the_protocols_there_are():
    from harness.cli.load import PROTOCOL_CHOICES
    from harness.load.protocols import PROTOCOL_NAMES

    assert PROTOCOL_CHOICES == PROTOCOL_NAMES
