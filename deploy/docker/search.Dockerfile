# syntax=docker/dockerfile:1
# The search service (FAISS) image. FAISS=cpu (default) or FAISS=gpu for faiss-gpu, faiss's own
# CUDA 12 wheel (constraints-gpu.txt), with code for Volta to Hopper (compute capability 7.0-9.0)
# and PTX for newer GPUs:
#   docker build -f deploy/docker/search.Dockerfile -t facerec/search:0.1.0 .
#   docker build -f deploy/docker/search.Dockerfile --build-arg FAISS=gpu -t facerec/search:0.1.0-gpu .
# The GPU variant needs no CUDA base image: the CUDA runtime, cuBLAS and cuRAND come as PyPI
# wheels, the driver from the NVIDIA container toolkit on the host. At start the service asks the
# driver whether this faiss can run on the GPU and refuses with the reason if not
# (search_service/gpu_support.py), instead of letting faiss abort at the first search.
ARG FAISS=cpu

FROM python:3.11.14-slim-bookworm AS build
ARG FAISS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# Only what search_service imports (tests/deploy checks the list against its imports).
COPY pyproject.toml README.md ./
COPY deploy/docker/requirements.py deploy/docker/constraints.txt deploy/docker/constraints-gpu.txt deploy/docker/
RUN if [ "$FAISS" = gpu ]; then extra="--extra gpu"; else extra=""; fi \
    && python deploy/docker/requirements.py pyproject.toml \
        --only fastapi uvicorn httpx numpy faiss-cpu pydantic-settings prometheus-client $extra > requirements.txt \
    && /opt/venv/bin/pip install -r requirements.txt \
        -c deploy/docker/constraints.txt -c deploy/docker/constraints-gpu.txt
COPY orchestrator orchestrator
COPY search_service search_service
# --no-deps: the orchestrator's libraries are not wanted here (only its package files ride
# along, unused, because both packages ship in one distribution).
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11.14-slim-bookworm
RUN groupadd --system --gid 10001 facerec \
    && useradd --system --uid 10001 --gid facerec --no-create-home --shell /usr/sbin/nologin facerec \
    && install -d -o facerec -g facerec /data
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/facerec/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL=http://127.0.0.1:8100/health
USER 10001:10001
WORKDIR /data
# Snapshots and the write-ahead log live here: mount a volume, or a restart loses the index.
VOLUME ["/data"]
EXPOSE 8100
# Long start period: at start the service replays the log written since the last snapshot.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/facerec/healthcheck.py"]
ENTRYPOINT ["python", "-m", "search_service"]
CMD ["--host", "0.0.0.0", "--port", "8100", "--data-dir", "/data"]
