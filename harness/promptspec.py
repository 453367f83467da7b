"""What a generative load asks for: prompts and output lengths from a distribution or a dataset, the n-th
request deterministic from a seed. On the ground floor, so `harness.protocolspec.ProtocolSettings` validates
its fields where they enter.

Settings of the OpenAI protocols (a spec's ``target.protocol``, the load's flags):

- ``max_tokens``: the output length asked of each request: a fixed count (``16``) or a uniform range
  (``{min: 4, max: 64}``, both ends included).
- ``prompt_words``: the prompt's length in words, fixed or a uniform range: the prompt is that many words
  drawn from a small vocabulary of common English words (about one token each in common tokenizers).
  Unset: every request sends the fixed ``prompt``.
- ``dataset``: a JSONL file, one JSON object a line (blank lines skipped): ``{"prompt": "..."}`` or
  ``{"messages": [{"role": "user", "content": "..."}, ...]}`` (chat only), with an optional
  ``max_tokens`` (or ``output_tokens``, the same) that this request asks for instead of the settings';
  other keys are ignored. ``dataset_lengths: false`` ignores the lines' lengths (every request takes
  ``max_tokens``). A relative path in a spec is read from the spec file's folder; a file is read whole,
  up to `harness.userfiles.MAX_FILE_BYTES` (16 MiB: tens of thousands of prompts).
- ``seed``: the draw of every request: request n's prompt and length are the same for the same seed and
  n, whichever sender builds it (Locust, the open-loop generator, the closed-loop clients, the prober)
  and in whichever order, so every sender sends one sequence. A dataset is visited in an order drawn from
  the seed: each pass over it takes every line once.

A bad range or a dataset that cannot be used is one ConfigError naming the field and the value: for a
dataset's line, ``dataset`` and ``FILE:LINE``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.errors import ConfigError

__all__ = ["MAX_LENGTH", "MAX_DATASET_LINES", "WORDS", "LengthRange", "parse_length", "DatasetEntry", "read_dataset",
           "PromptPlan"]

MAX_LENGTH = 1_000_000  # a length (words or tokens) beyond any model's context
MAX_DATASET_LINES = 1_000_000
WORDS = ("the", "load", "test", "of", "a", "server", "model", "token", "answer", "time", "first", "next", "queue",
         "cache", "batch", "request", "and", "to", "in", "is", "fast", "slow", "long", "short", "one", "two", "three",
         "write", "read", "about", "what", "why", "how", "when", "day", "night", "river", "stone", "light", "sound",
         "green", "blue", "small", "large", "old", "new", "city", "field", "story", "word", "line", "page", "book",
         "song", "tree", "bird", "rain", "wind", "fire", "water", "north", "south", "east", "west")
LENGTH_HELP = "a fixed count (an integer) or a uniform range {min: A, max: B} of integers from 1"


@dataclass(frozen=True)
class LengthRange:
    """A uniform range of lengths, both ends included (``min == max``: fixed)."""

    min: int
    max: int

    def draw(self, rng: random.Random) -> int:
        """Return one length of the range drawn by ``rng`` (no draw for a fixed length)."""
        return self.min if self.min == self.max else rng.randint(self.min, self.max)

    def to_value(self) -> int | dict[str, int]:
        """Return the range as written: an integer when fixed, else ``{"min": A, "max": B}``."""
        return self.min if self.min == self.max else {"min": self.min, "max": self.max}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_LENGTH


def parse_length(value: Any) -> int | LengthRange:
    """Return ``value`` as a fixed length (an int) or a `LengthRange`; raise ValueError saying what it must be
    (the caller names the field: pydantic turns it into one ConfigError)."""
    if isinstance(value, LengthRange):
        return value
    if isinstance(value, Mapping):
        if set(value) != {"min", "max"}:
            raise ValueError(f"a range has exactly the keys min and max; {LENGTH_HELP}")
        low, high = value["min"], value["max"]
        if not (_count(low) and _count(high)):
            raise ValueError(f"min and max must be integers from 1 to {MAX_LENGTH}; {LENGTH_HELP}")
        if low > high:
            raise ValueError(f"min {low} is above max {high}")
        return LengthRange(low, high)
    if _count(value):
        return value
    raise ValueError(f"must be {LENGTH_HELP} (at most {MAX_LENGTH})")


@dataclass(frozen=True)
class DatasetEntry:
    """One line of a dataset: a prompt or chat messages, and the output length it asks (None: the settings')."""

    prompt: str | None
    messages: tuple[dict[str, str], ...] | None
    max_tokens: int | None


def _entry(data: Any, where: str) -> DatasetEntry:
    """Return the `DatasetEntry` of one parsed line; raise ConfigError naming ``dataset`` and ``where``."""
    def bad(why: str) -> ConfigError:
        return ConfigError("dataset", where, why)

    if not isinstance(data, dict):
        raise bad("a line must be a JSON object with a prompt or messages")
    if ("prompt" in data) == ("messages" in data):
        raise bad("a line needs exactly one of prompt or messages")
    prompt, messages = data.get("prompt"), data.get("messages")
    if "prompt" in data and not (isinstance(prompt, str) and prompt.strip()):
        raise bad(f"prompt must be a non-empty string, not {prompt!r:.60}")
    if "messages" in data:
        if not (isinstance(messages, list) and messages and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages)):
            raise bad("messages must be a non-empty list of objects with a string role and content")
        messages = tuple({"role": m["role"], "content": m["content"]} for m in messages)
    if "max_tokens" in data and "output_tokens" in data:
        raise bad("give max_tokens or output_tokens (the same), not both")
    length = data.get("max_tokens", data.get("output_tokens"))
    if length is not None and not _count(length):
        raise bad(f"max_tokens/output_tokens must be an integer from 1 to {MAX_LENGTH}, not {length!r:.40}")
    return DatasetEntry(prompt, messages, length)


def read_dataset(path: str | Path, *, chat: bool = True) -> list[DatasetEntry]:
    """Return the entries of a JSONL dataset (blank lines skipped).

    Raises ConfigError naming ``dataset``: the file cannot be read or holds no line; with ``FILE:LINE`` for
    a line that is not JSON or not an entry, or that holds messages when ``chat`` is false (completions
    take a prompt).
    """
    from harness.userfiles import read_text

    text = read_text(path, "dataset")
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ConfigError("dataset", where, f"line {number} is not JSON: {exc}") from None
        entry = _entry(data, where)
        if entry.messages is not None and not chat:
            raise ConfigError("dataset", where, "messages need the openai-chat protocol; completions take a prompt")
        entries.append(entry)
        if len(entries) > MAX_DATASET_LINES:
            raise ConfigError("dataset", str(path), f"more than {MAX_DATASET_LINES} lines")
    if not entries:
        raise ConfigError("dataset", str(path), "holds no line (one JSON object a line: a prompt or messages)")
    return entries


class PromptPlan:
    """The prompt and output length of the n-th request (see the module docs); the same for the same n."""

    def __init__(self, *, prompt: str, max_tokens: int | LengthRange, prompt_words: int | LengthRange | None = None,
                 dataset: list[DatasetEntry] | None = None, dataset_lengths: bool = True, seed: int = 0) -> None:
        self.prompt, self.seed, self.dataset, self.dataset_lengths = prompt, seed, dataset, dataset_lengths
        self.max_tokens = parse_length(max_tokens)
        self.prompt_words = parse_length(prompt_words) if prompt_words is not None else None
        self.order = list(range(len(dataset))) if dataset else []
        random.Random(seed).shuffle(self.order)  # one pass over the dataset in an order drawn from the seed

    def rng(self, n: int) -> random.Random:
        """Return request ``n``'s own generator (independent of which requests were built before it)."""
        return random.Random((self.seed << 40) ^ (n * 0x9E3779B97F4A7C15 & (2**64 - 1)))

    def _length(self, length: int | LengthRange, rng: random.Random) -> int:
        return length.draw(rng) if isinstance(length, LengthRange) else length

    def draw(self, n: int) -> tuple[str | None, tuple[dict[str, str], ...] | None, int]:
        """Return request ``n``'s (prompt, chat messages or None, max_tokens); a dataset line of messages has
        no prompt, every other request a prompt and no messages."""
        rng = self.rng(n)
        max_tokens = self._length(self.max_tokens, rng)
        if self.dataset:
            entry = self.dataset[self.order[n % len(self.order)]]
            if entry.max_tokens is not None and self.dataset_lengths:
                max_tokens = entry.max_tokens
            return entry.prompt, entry.messages, max_tokens
        if self.prompt_words is None:
            return self.prompt, None, max_tokens
        words = self._length(self.prompt_words, rng)
        return " ".join(rng.choices(WORDS, k=words)), None, max_tokens
