"""Open Inference Protocol v2 (the KServe/Triton REST protocol, and the reference service's):
``POST /v2/models/{model}/infer`` with valid random input tensors of a reference model.

Bodies are built once (``variants`` of them, seeds 0..variants-1) and serialised, so senders spend no
CPU on JSON; request n takes body ``n % variants``. Success is HTTP 200 (the base rule).
"""

from __future__ import annotations

from harness.load.protocols.base import Adapter, HttpRequest

__all__ = ["OipV2Adapter", "JSON_HEADERS", "infer_path", "request_bodies"]

JSON_HEADERS = {"Content-Type": "application/json"}
BODY_VARIANTS = 8


def infer_path(model: str) -> str:
    """Return the v2 inference path of ``model``."""
    return f"/v2/models/{model}/infer"


def request_bodies(model: str, batch_size: int = 1, variants: int = BODY_VARIANTS) -> list[bytes]:
    """Return ``variants`` serialised v2 request bodies with valid random inputs (seeds 0..variants-1)."""
    import orjson

    from harness.service.registry import example_request

    return [orjson.dumps(example_request(model, batch_size, seed)) for seed in range(variants)]


class OipV2Adapter(Adapter):
    """Inference requests of ``batch_size`` rows to the reference model ``model``."""

    name = "oip-v2"

    def __init__(self, model: str, batch_size: int = 1, *, variants: int = BODY_VARIANTS,
                 path: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.path = path or infer_path(model)
        self.headers = {**JSON_HEADERS, **(headers or {})}
        self.bodies = request_bodies(model, batch_size, variants)

    def request(self, n: int) -> HttpRequest:
        return HttpRequest("POST", self.path, self.headers, self.bodies[n % len(self.bodies)])
