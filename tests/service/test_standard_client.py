"""A standard Open Inference Protocol v2 client (tritonclient.http) works against the service unchanged.

tritonclient.http runs on gevent (geventhttpclient), so it runs in its own process, never in pytest's.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tritonclient") is None, reason="tritonclient not installed (pip install -e '.[dev]')"
)

CLIENT_SCRIPT = r"""
import json, sys
import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

client = httpclient.InferenceServerClient(url=sys.argv[1])
features = np.asarray(json.loads(sys.argv[2]), dtype=np.float32)
out = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready("tiny-mlp"),
    "version_ready": client.is_model_ready("tiny-mlp", "1"),
    "server": client.get_server_metadata(),
    "metadata": client.get_model_metadata("tiny-mlp"),
    "index": client.get_model_repository_index(),
}
for binary in (True, False):
    tensor = httpclient.InferInput("features", list(features.shape), "FP32")
    tensor.set_data_from_numpy(features, binary_data=binary)
    wanted = httpclient.InferRequestedOutput("scores", binary_data=binary)
    result = client.infer("tiny-mlp", [tensor], outputs=[wanted], request_id="req-7")
    out[f"scores_binary_{binary}"] = result.as_numpy("scores").tolist()
    out["response_id"] = result.get_response()["id"]
out["scores_default"] = client.infer("tiny-mlp", [tensor]).as_numpy("scores").tolist()
try:
    client.infer("no-such-model", [tensor])
except InferenceServerException as exc:
    out["error"] = exc.message()
print(json.dumps(out))
"""


def test_tritonclient_reads_health_metadata_and_infers(service: Any) -> None:
    features = np.random.default_rng(3).uniform(-1, 1, (2, 32)).astype(np.float32)
    done = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, service.base_url.removeprefix("http://"), json.dumps(features.tolist())],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["live"] and out["ready"] and out["model_ready"] and out["version_ready"]
    assert out["server"]["name"] == "harness-reference" and "binary_tensor_data" in out["server"]["extensions"]
    assert out["metadata"]["name"] == "tiny-mlp" and out["metadata"]["outputs"][0]["shape"] == [-1, 4]
    assert out["index"] == [{"name": "tiny-mlp", "version": "1", "state": "READY"}]
    expected = httpx.post(
        f"{service.base_url}/v2/models/tiny-mlp/infer",
        json={"inputs": [{"name": "features", "shape": [2, 32], "datatype": "FP32", "data": features.ravel().tolist()}]},
    ).json()["outputs"][0]["data"]
    for key in ("scores_binary_True", "scores_binary_False", "scores_default"):
        assert np.allclose(np.asarray(out[key]).ravel(), expected, rtol=1e-5, atol=1e-6), key
    assert out["response_id"] == "req-7"
    assert "unknown model 'no-such-model'" in out["error"]
