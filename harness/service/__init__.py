"""The reference inference service (Open Inference Protocol v2), run as its own process.

Entry points: `python -m harness.service` / `harness serve` (flags in `options`), `server.serve`,
and `server.ServiceThread` (in-process, for tests). Clients: `client` (standard library only).
Pieces: `registry` (model signatures, no torch), `models` and `weights` (torch), `model_runner` (one model
on one device), `batcher` and `engine` (dynamic batching on one worker thread), `protocol` (v2
messages), `app` (the ASGI routes), `metrics` (Prometheus), `faults` (chaos hooks).
Importing this package imports nothing heavy: torch loads on the model worker thread.
"""
