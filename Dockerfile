# syntax=docker/dockerfile:1
# The trainserve image: the job API, the dispatcher, and a Ray node (KubeRay head/worker or a
# cluster-launcher node), all from one image so that every process runs the same code.
#
#   docker build -t trainserve:0.1.0 .                                  # CPU (the default)
#   docker build --build-arg VARIANT=cuda -t trainserve:0.1.0-cuda .    # CUDA
#
# Run:  docker run -v ts-admin:/home/ray/.trainserve trainserve:0.1.0 api --listen 0.0.0.0:50051 \
#           --admin-token-file /home/ray/.trainserve/admin-token --redis-url redis://HOST:6379/0 \
#           --tls-cert /tls/tls.crt --tls-key /tls/tls.key ...   (see cluster/image/entrypoint.sh)
#       The API requires bearer tokens (the admin token is made in --admin-token-file on the
#       first start); TRAINSERVE_REDIS_PASSWORD gives Redis's password. Without tokens it runs
#       only with --insecure, and then on loopback only.
# KubeRay overrides the command with its own `ray start ...`, which finds `ray` on PATH.

ARG VARIANT=cpu
# pin: set the digest (nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04@sha256:...) once read from
# the registry (`docker buildx imagetools inspect`); it could not be looked up where this was written.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

# -- CPU base: Debian with CPython 3.11 -------------------------------------------------------
# pin: set the digest (python:3.11-slim-bookworm@sha256:...) once read from the registry
# (`docker buildx imagetools inspect python:3.11-slim-bookworm`); it could not be looked up
# where this was written.
FROM python:3.11-slim-bookworm AS base-cpu
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# -- CUDA base: NVIDIA's runtime image with Ubuntu's Python 3.11 ----------------------------------
FROM ${CUDA_IMAGE} AS base-cuda
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev ca-certificates \
 && ln -sf /usr/bin/python3.11 /usr/local/bin/python \
 && rm -rf /var/lib/apt/lists/*

# -- the image ------------------------------------------------------------------------------------
FROM base-${VARIANT} AS final
ARG VARIANT
ARG TORCH_VERSION=2.13.0
# Overrides the variant's wheel index (e.g. another CUDA version: .../whl/cu126).
ARG TORCH_INDEX_URL_OVERRIDE=""
# The sha256 of the torch wheel from that index: set, pip checks the download against it.
# pin: set it (e.g. from the index's #sha256= link of torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl);
# the index could not be reached where the lock was made.
ARG TORCH_SHA256=""
# The same uid as rayproject/ray images, so volumes prepared for those work unchanged.
ARG UID=1000

# wget: KubeRay's default readiness and liveness probes of Ray pods call it.
# tini: reaps Ray's many child processes when the entrypoint is PID 1.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        wget tini procps \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/trainserve
ENV PATH=/opt/trainserve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRAINSERVE_VARIANT=${VARIANT}

# Every Python dependency but torch, pinned with hashes (cluster/image/requirements.lock,
# pip-compile --generate-hashes): pip checks each file and installs nothing outside the list.
COPY cluster/image/requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock \
 && rm /tmp/requirements.lock

# torch from the variant's wheel index, pinned by version (and by TORCH_SHA256 when set); its
# own requirements are already installed from the lock (the CUDA build adds NVIDIA's
# libraries). The package's `torch==` pin then finds it satisfied.
RUN index="${TORCH_INDEX_URL_OVERRIDE:-$TORCH_INDEX_URL}" \
 && if [ -n "${TORCH_SHA256}" ]; then \
      echo "torch==${TORCH_VERSION} --hash=sha256:${TORCH_SHA256}" > /tmp/torch.txt \
      && pip install --require-hashes --no-deps -r /tmp/torch.txt --index-url "$index" \
      && rm /tmp/torch.txt; \
    else \
      pip install "torch==${TORCH_VERSION}" --index-url "$index" \
          --extra-index-url https://pypi.org/simple; \
    fi

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY protos ./protos
COPY scripts ./scripts
COPY services ./services
# The gRPC stubs are generated here, never copied from a checkout (.dockerignore drops _gen/);
# then the package is installed from the tree, alone: its dependencies (ray[train,tune,serve],
# grpc, ...) and build tools (setuptools, grpcio-tools) came from the lock above.
RUN python scripts/gen_protos.py \
 && pip install --no-deps --no-build-isolation . \
 && pip check \
 && python -c "import trainserve._gen.trainserve.v1.job_pb2_grpc, ray, torch; print('torch', torch.__version__, 'ray', ray.__version__)" \
 && rm -rf /src

COPY cluster/image/entrypoint.sh /usr/local/bin/trainserve-entrypoint
RUN chmod 0755 /usr/local/bin/trainserve-entrypoint \
 && useradd --uid "${UID}" --create-home --shell /bin/bash ray \
 && mkdir -p /mnt/trainserve \
 && chown ray:ray /mnt/trainserve

USER ${UID}
WORKDIR /home/ray
ENV HOME=/home/ray \
    TRAINSERVE_STATE_DIR=/home/ray/.trainserve \
    TRAINSERVE_STORAGE_DIR=/mnt/trainserve/storage

# job API, its metrics, dispatcher metrics, Serve REST and gRPC, Ray GCS, dashboard, Ray metrics
EXPOSE 50051 9100 9101 8000 9000 6379 8265 8080
ENTRYPOINT ["tini", "--", "trainserve-entrypoint"]
CMD ["api"]
