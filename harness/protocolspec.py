"""The settings of a protocol, validated where they enter: what `harness.load.protocols.build_adapter` turns
into an adapter. On the ground floor, so a spec's target (`harness.targetspec`) names the protocol its server speaks.

One pydantic model for all four protocols (a field a protocol does not use keeps its default), so a
load profile, an open-loop config and the prober's config each carry one ``protocol`` object to their
child process as JSON. A bad value is one ConfigError naming the field and the value (through
`harness.validation.validate_model`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_serializer, field_validator, model_validator

from harness.errors import ConfigError
from harness.modelnames import DEFAULT_MODEL
from harness.promptspec import LengthRange, parse_length, read_dataset
from harness.validation import validate_model

__all__ = ["PROTOCOL_NAMES", "DEFAULT_PROMPT", "ProtocolSettings", "protocol_settings"]

PROTOCOL_NAMES = ("oip-v2", "openai-chat", "openai-completions", "http-json")
DEFAULT_PROMPT = "Write one sentence about load testing."
DEFAULT_MAX_TOKENS = 16
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class ProtocolSettings(BaseModel):
    """Which protocol, and its settings (see each adapter's module for what they mean).

    ``model``: oip-v2's reference model (default the harness's default model), the ``model`` field an
    OpenAI-compatible request names (omitted when unset). ``path`` overrides the protocol's own path
    (http-json needs one). ``stream``, ``max_tokens`` and ``prompt`` are the OpenAI protocols';
    ``prompt_words``, ``dataset``, ``dataset_lengths`` and ``seed`` too (``max_tokens`` and ``prompt_words``
    fixed or a uniform range; see `harness.promptspec`, which draws the n-th request's prompt and length);
    ``method``, ``body_template``, ``bodies_file``, ``success_status`` and ``success_field`` http-json's;
    ``inputs`` and ``bodies_file`` (v2 request bodies) oip-v2's, for a model that is not a reference model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: str = "oip-v2"
    model: str | None = None
    batch_size: int = Field(1, ge=1, le=4096)
    path: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    stream: bool = True
    max_tokens: int | LengthRange = DEFAULT_MAX_TOKENS  # fixed, or a uniform range {min, max}
    prompt: str = DEFAULT_PROMPT
    prompt_words: int | LengthRange | None = None  # a prompt of that many seeded words instead of ``prompt``
    dataset: str | None = None  # a JSONL file of prompts or messages (and output lengths)
    dataset_lengths: bool = True  # a dataset line's max_tokens wins over the settings'
    seed: int = Field(0, ge=0, le=2**31 - 1)  # draws request n's prompt and length
    method: str = "POST"
    body_template: str | None = None
    bodies_file: str | None = None
    success_status: tuple[int, ...] = (200,)
    success_field: str | None = None
    inputs: tuple[dict[str, Any], ...] | None = None  # oip-v2: tensors {name, datatype, shape} (a server's metadata)

    @field_validator("protocol")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PROTOCOL_NAMES:
            raise ValueError(f"unknown protocol; choose one of {', '.join(PROTOCOL_NAMES)}")
        return value

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with / (it is joined to the target's base URL)")
        return value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in METHODS:
            raise ValueError(f"unknown HTTP method; choose one of {', '.join(METHODS)}")
        return value.upper()

    @field_validator("success_status")
    @classmethod
    def _statuses(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        if not values or any(not 100 <= v <= 599 for v in values):
            raise ValueError("must be one or more HTTP statuses from 100 to 599")
        return values

    @field_validator("bodies_file", "dataset")
    @classmethod
    def _resolved(cls, value: str | None, info: ValidationInfo) -> str | None:
        from harness.paths import resolve_path

        return None if value is None else str(resolve_path(value, info.field_name))  # children get absolute paths

    @field_validator("max_tokens", "prompt_words", mode="before")
    @classmethod
    def _length(cls, value: Any, info: ValidationInfo) -> Any:
        return None if value is None and info.field_name == "prompt_words" else parse_length(value)

    @model_validator(mode="after")  # raises ConfigError itself: its value is the value, not its text
    def _fits_protocol(self) -> "ProtocolSettings":
        if self.protocol != "oip-v2" and self.inputs is not None:
            raise ConfigError("inputs", self.inputs, "only the oip-v2 protocol takes input tensors")
        if self.protocol != "http-json":
            for name in ("body_template", "success_field") + (("bodies_file",) if self.protocol != "oip-v2" else ()):
                if getattr(self, name) is not None:
                    raise ConfigError(name, getattr(self, name), "only the http-json protocol takes it")
            for name, default in (("method", "POST"), ("success_status", (200,))):
                if getattr(self, name) != default:  # the other protocols POST and succeed on 200 only
                    raise ConfigError(name, getattr(self, name), "only the http-json protocol takes it")
        elif self.path is None:
            raise ConfigError("path", None, "the http-json protocol needs the path to send to")
        if not self.protocol.startswith("openai"):
            for name in ("prompt_words", "dataset"):
                if getattr(self, name) is not None:
                    raise ConfigError(name, getattr(self, name), "only the openai-chat and openai-completions protocols "
                                      "take it")
        if self.dataset is not None:
            if self.prompt_words is not None:
                raise ConfigError("prompt_words", self.prompt_words, "a dataset gives the prompts; give one or the other")
            read_dataset(self.dataset, chat=self.protocol == "openai-chat")  # a bad line fails here, where it enters
        return self

    @field_serializer("max_tokens", "prompt_words")
    def _written(self, value: int | LengthRange | None) -> int | dict[str, int] | None:
        return value.to_value() if isinstance(value, LengthRange) else value  # as written: children read it back

    @property
    def reference_model(self) -> str:
        """oip-v2's model: the one given, else the harness's default."""
        return self.model or DEFAULT_MODEL

    @property
    def needs_metadata(self) -> bool:
        """True for oip-v2 to a model that is not a reference model, with neither inputs nor a bodies file:
        its tensors are to be read from the server (`harness.load.protocols.oip_v2.with_metadata`)."""
        from harness.modelnames import MODEL_NAMES

        return (self.protocol == "oip-v2" and self.inputs is None and self.bodies_file is None
                and self.reference_model not in MODEL_NAMES)


def protocol_settings(data: dict | ProtocolSettings | None, *, source: str = "protocol") -> ProtocolSettings:
    """Return ``data`` validated as `ProtocolSettings` (None: oip-v2 with the defaults); raise ConfigError."""
    if isinstance(data, ProtocolSettings):
        return data
    if data is None:
        return ProtocolSettings()
    if not isinstance(data, dict):
        raise ConfigError("protocol", data, "must be a mapping of protocol settings")
    return validate_model(ProtocolSettings, data, source=source)
