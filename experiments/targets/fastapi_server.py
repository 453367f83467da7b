"""A plain FastAPI app under uvicorn: generic JSON in, JSON out, a tiny model made in code.

Runs from its own virtual environment (``make servers`` makes it), as any FastAPI service is run:

    .venvs/fastapi/bin/python -m uvicorn fastapi_server:app --host 127.0.0.1 --port 8000

- ``POST /predict`` with ``{"features": [f0, f1, f2, f3]}`` (or a list of such rows under ``"rows"``)
  answers ``{"prediction": [...], "model": "tiny-ridge"}``; a body that is not four numbers is 422
  (FastAPI's validation).
- ``GET /healthz`` (liveness: the process answers) and ``GET /readyz`` (readiness: 200 while the model
  is loaded, 503 otherwise).

The "model" is a ridge regression of 4 features with weights from a fixed seed (numpy), loaded in
the app's lifespan, so uvicorn listens only once it is there.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Response
from pydantic import BaseModel, Field

FEATURES, SEED = 4, 23
MODEL = "tiny-ridge"
state: dict[str, np.ndarray] = {}


class Features(BaseModel):
    features: list[float] | None = Field(None, min_length=FEATURES, max_length=FEATURES)
    rows: list[list[float]] | None = None


@asynccontextmanager
async def lifespan(_app: FastAPI):
    rng = np.random.default_rng(SEED)
    state["weights"], state["bias"] = rng.standard_normal(FEATURES), rng.standard_normal(1)
    yield
    state.clear()


app = FastAPI(title="tiny-ridge", lifespan=lifespan)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "alive"}


@app.get("/readyz")
def readyz(response: Response) -> dict[str, bool]:
    response.status_code = 200 if state else 503
    return {"ready": bool(state)}


@app.post("/predict")
def predict(body: Features, response: Response) -> dict[str, object]:
    if not state:
        response.status_code = 503
        return {"error": "the model is not loaded yet"}
    rows = [body.features] if body.features is not None else body.rows or []
    if not rows or any(len(row) != FEATURES for row in rows):
        response.status_code = 422
        return {"error": f"give features: {FEATURES} numbers, or rows of them"}
    x = np.asarray(rows, dtype=np.float64)
    return {"prediction": (x @ state["weights"] + state["bias"]).round(6).tolist(), "model": MODEL}
