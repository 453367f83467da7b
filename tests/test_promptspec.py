"""Prompts and output lengths of a generative load (`harness.promptspec`): fixed, uniform or a dataset, the
n-th request the same in every sender, and every bad value one line naming the field (a line by FILE:LINE)."""

from __future__ import annotations

import json

import pytest

from harness.config import load_spec
from harness.errors import ConfigError
from harness.load.protocols import build_adapter
from harness.promptspec import WORDS, LengthRange, read_dataset
from harness.protocolspec import protocol_settings


def _bodies(settings: dict, count: int, order=None) -> list[dict]:
    adapter = build_adapter(protocol_settings(settings))
    numbers = list(order if order is not None else range(count))
    return [json.loads(adapter.request(n).body) for n in numbers]


def test_uniform_ranges_are_drawn_per_request_from_the_seed_in_any_order():
    settings = {"protocol": "openai-completions", "max_tokens": {"min": 2, "max": 9},
                "prompt_words": {"min": 3, "max": 5}, "seed": 4}
    forward = _bodies(settings, 200)
    backward = _bodies(settings, 200, order=range(199, -1, -1))[::-1]  # another sender, another order
    assert forward == backward
    lengths = [b["max_tokens"] for b in forward]
    words = [b["prompt"].split() for b in forward]
    assert set(lengths) == set(range(2, 10))  # every value of the range, none outside it
    assert {len(w) for w in words} == {3, 4, 5} and all(word in WORDS for w in words for word in w)
    assert _bodies({**settings, "seed": 5}, 200) != forward  # the seed draws them


def test_fixed_settings_send_one_body_and_a_spec_round_trips_its_ranges():
    fixed = _bodies({"protocol": "openai-chat", "max_tokens": 7, "prompt": "hi"}, 3)
    assert all(b == {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 7, "stream": True,
                     "stream_options": {"include_usage": True}} for b in fixed)
    settings = protocol_settings({"protocol": "openai-chat", "max_tokens": {"min": 1, "max": 3}})
    assert settings.max_tokens == LengthRange(1, 3)
    assert protocol_settings(settings.model_dump(mode="json")) == settings  # what a child process reads back


def test_a_dataset_is_visited_line_by_line_in_a_seeded_order_with_its_own_lengths(tmp_path):
    lines = [{"prompt": f"p{i}", "max_tokens": i + 1} for i in range(5)]
    lines.append({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "m"}]})
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    settings = {"protocol": "openai-chat", "dataset": str(path), "max_tokens": 11, "seed": 1}
    bodies = _bodies(settings, 12)
    contents = [b["messages"][-1]["content"] for b in bodies]
    assert sorted(contents[:6]) == sorted(contents[6:]) == ["m", "p0", "p1", "p2", "p3", "p4"]  # each pass: every line
    assert contents[:6] == contents[6:]
    by_prompt = {b["messages"][-1]["content"]: b["max_tokens"] for b in bodies}
    assert by_prompt == {"p0": 1, "p1": 2, "p2": 3, "p3": 4, "p4": 5, "m": 11}  # a line's own length wins
    assert bodies[contents.index("m")]["messages"][0] == {"role": "system", "content": "be brief"}
    ignored = _bodies({**settings, "dataset_lengths": False}, 6)
    assert {b["max_tokens"] for b in ignored} == {11}


@pytest.mark.parametrize("settings, field, words", [
    ({"max_tokens": {"min": 9, "max": 2}}, "max_tokens", "min 9 is above max 2"),
    ({"max_tokens": 0}, "max_tokens", "a fixed count (an integer) or a uniform range"),
    ({"prompt_words": {"min": 1}}, "prompt_words", "exactly the keys min and max"),
    ({"seed": -1}, "seed", "greater than or equal to 0"),
])
def test_a_bad_distribution_is_one_line_naming_the_field_and_the_value(settings, field, words):
    with pytest.raises(ConfigError) as info:
        protocol_settings({"protocol": "openai-chat", **settings})
    assert info.value.field.endswith(field) and words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, line, words", [
    ('{"prompt": "a"}\n{"prompt": "b",}\n', 2, "line 2 is not JSON"),
    ('{"prompt": "a"}\n\n["b"]\n', 3, "must be a JSON object"),
    ('{"text": "a"}\n', 1, "exactly one of prompt or messages"),
    ('{"prompt": "a", "max_tokens": 0}\n', 1, "max_tokens/output_tokens must be an integer"),
    ('{"messages": []}\n', 1, "non-empty list"),
])
def test_a_bad_dataset_line_is_one_line_naming_the_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "d.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        protocol_settings({"protocol": "openai-chat", "dataset": str(path)})
    assert info.value.field == "dataset" and info.value.value == f"{path}:{line}" and words in str(info.value)
    assert "\n" not in str(info.value)


def test_datasets_that_cannot_be_used_are_refused_where_they_enter(tmp_path):
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"chat.jsonl:1'.*messages need the openai-chat protocol"):
        protocol_settings({"protocol": "openai-completions", "dataset": str(chat)})
    with pytest.raises(ConfigError, match="no such file"):
        protocol_settings({"protocol": "openai-chat", "dataset": str(tmp_path / "none.jsonl")})
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no line"):
        read_dataset(tmp_path / "empty.jsonl")
    with pytest.raises(ConfigError, match="only the openai-chat and openai-completions protocols"):
        protocol_settings({"protocol": "oip-v2", "dataset": str(chat)})
    with pytest.raises(ConfigError, match="a dataset gives the prompts"):
        protocol_settings({"protocol": "openai-chat", "dataset": str(chat), "prompt_words": 3})


def test_a_specs_relative_dataset_is_read_from_the_specs_folder(tmp_path, monkeypatch):
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "prompts.jsonl").write_text('{"prompt": "hi", "max_tokens": 3}\n', encoding="utf-8")
    (folder / "llm.yaml").write_text(
        "target:\n  endpoint: http://127.0.0.1:8000\n"
        "  protocol: {protocol: openai-chat, dataset: prompts.jsonl, max_tokens: {min: 2, max: 4}}\n")
    monkeypatch.chdir(tmp_path)
    spec = load_spec("specs/llm.yaml")
    assert spec.target.protocol.dataset == str(folder / "prompts.jsonl")
    (folder / "bad.yaml").write_text(
        "target:\n  endpoint: http://127.0.0.1:8000\n  protocol: {protocol: openai-chat, max_tokens: {min: 5, max: 4}}\n")
    with pytest.raises(ConfigError, match="min 5 is above max 4"):
        load_spec("specs/bad.yaml")


def test_harness_load_flags_take_ranges_and_name_the_flag_when_bad(tmp_path, capsys):
    from harness.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": 3}\n', encoding="utf-8")
    for flags, first in ((["--max-tokens", "9-2"], "--max-tokens={'min': 9, 'max': 2}: min 9 is above max 2"),
                         (["--prompt-words", "x"], "--prompt-words='x': must be a fixed count"),
                         (["--dataset", str(bad)], f"--dataset='{bad}:2': prompt must be a non-empty string"),
                         (["--itl-ms", "0"], "--itl-ms=0.0: a per-request bound must be")):
        assert main(["load", "--endpoint", "http://127.0.0.1:9", "--duration-s", "1", "--no-pin", "--out",
                     str(tmp_path / "r"), "--protocol", "openai-chat", *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and first in err, err
