# syntax=docker/dockerfile:1
# The reference inference service and the harness in one image (the in-cluster runner uses it too).
#
#   CPU (default):  docker build -t gpu-inference-harness:0.1.0-cpu .
#   GPU (CUDA):     docker build --build-arg VARIANT=cuda -t gpu-inference-harness:0.1.0-cuda .
#
# Weights are generated at build time for the models in MODELS and the seed SEED, each with its
# manifest (SHA-256, size, shapes); the service verifies them against it at every start and refuses
# a mismatch. Serving another seed needs an image built with that SEED.

ARG VARIANT=cpu

# ---- bases: the same image builds the virtualenv and runs it, so the interpreter matches ----------
FROM python:3.11.11-slim-bookworm AS base-cpu
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PYTHON=python3

FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS base-cuda
# Ubuntu 24.04's python3.12; the CUDA tag above pins the distribution release it comes from.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# PyPI's Linux torch wheel is the CUDA build (it brings its CUDA libraries as wheels)
ENV TORCH_INDEX_URL=https://pypi.org/simple \
    PYTHON=python3.12

# ---- build: a virtualenv with pinned torch and the harness, and the generated weights --------------
# base-${VARIANT} is one of the two stages above, each pinned to a tag (hadolint cannot resolve the ARG)
# hadolint ignore=DL3006
FROM base-${VARIANT} AS build
ARG TORCH_VERSION=2.13.0
ARG MODELS="ranker-mlp text-encoder"
ARG SEED=0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN "${PYTHON}" -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY harness ./harness
# the service extra (torch is already there, pinned above) and the kubernetes extra (the in-cluster runner)
RUN /opt/venv/bin/pip install --no-cache-dir ".[service,kubernetes]" \
    && /opt/venv/bin/python -c "import sys; from harness.service.weights import generate_weights; [print(generate_weights(m, int(sys.argv[1]), '/opt/harness/weights')['sha256'], m) for m in sys.argv[2].split()]" "${SEED}" "${MODELS}"

# ---- runtime: non-root, no build tools, weights read-only -----------------------------------------
# hadolint ignore=DL3006
FROM base-${VARIANT} AS runtime
ARG SEED=0
LABEL org.opencontainers.image.title="gpu-inference-harness" \
      org.opencontainers.image.description="Reference inference service (Open Inference Protocol v2) and the chaos/performance harness" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.harness.weights-seed="${SEED}"
RUN groupadd --system --gid 10001 harness \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/harness --create-home --shell /usr/sbin/nologin harness
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/harness/weights /opt/harness/weights
# the Chaos Toolkit experiments, where the in-cluster runner's `harness` finds them (./experiments)
COPY --chown=0:0 experiments /home/harness/experiments
ENV PATH=/opt/venv/bin:${PATH} \
    HARNESS_WEIGHTS_DIR=/opt/harness/weights \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/harness
EXPOSE 8000
# Liveness of the v2 protocol; Kubernetes uses its own probes (rendered from the spec) instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/v2/health/live', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["harness", "serve", "--host", "0.0.0.0"]
CMD ["--port", "8000"]
