"""A byte-level tokenizer made in code: one token per byte of UTF-8, a begin token, printable output.

Token ids 0-255 are the bytes; `BOS` begins every prompt (so an empty prompt is one token). The model
samples only printable ASCII (`OUTPUT_IDS`), so every output token is exactly one character and a
streamed chunk is never half a character. A chat request becomes one prompt through `chat_prompt`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BOS", "VOCAB_SIZE", "OUTPUT_IDS", "encode", "decode", "chat_prompt", "ChatFormatError"]

BOS = 256
VOCAB_SIZE = 257
OUTPUT_IDS = tuple(range(32, 127))  # what the sampler may pick: printable ASCII
ROLES = ("system", "user", "assistant", "tool", "developer")


class ChatFormatError(ValueError):
    """A chat ``messages`` list that cannot be read; the message names the field and value."""


def encode(text: str) -> list[int]:
    """Return the token ids of ``text``: BOS, then its UTF-8 bytes."""
    return [BOS, *text.encode("utf-8", errors="replace")]


def decode(ids: list[int]) -> str:
    """Return the text of output token ids (bytes; BOS and anything past a byte are dropped)."""
    return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


def _content(index: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for n, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ChatFormatError(f"messages[{index}].content[{n}]: only text parts "
                                      f"({{\"type\": \"text\", \"text\": ...}}) are served")
            parts.append(part["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise ChatFormatError(f"messages[{index}].content={str(content)[:60]!r}: must be a string or a list of text parts")


def chat_prompt(messages: Any) -> str:
    """Return the prompt text of a chat ``messages`` list (``<|role|>`` lines, then the assistant's turn);
    raise ChatFormatError naming the bad field."""
    if not isinstance(messages, list) or not messages:
        raise ChatFormatError(f"messages={str(messages)[:60]!r}: must be a non-empty list of {{role, content}} objects")
    lines = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ChatFormatError(f"messages[{index}]={str(message)[:60]!r}: must be an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise ChatFormatError(f"messages[{index}].role={str(role)[:40]!r}: must be one of {', '.join(ROLES)}")
        lines.append(f"<|{role}|>\n{_content(index, message.get('content'))}\n")
    return "".join(lines) + "<|assistant|>\n"
