# syntax=docker/dockerfile:1
# The Switchboard router as a container: `switchboard serve` on 0.0.0.0:50051 (gRPC) and :9464
# (/metrics), configured by SWITCHBOARD_* environment variables (README, Configuration).
#
#   docker build -t switchboard .
#   docker run -p 50051:50051 -p 9464:9464 -e SWITCHBOARD_REDIS_URL=redis://redis:6379/0 \
#     -v ./tls:/etc/switchboard/tls:ro -e SWITCHBOARD_TLS_CERT=/etc/switchboard/tls/server.pem \
#     -e SWITCHBOARD_TLS_KEY=/etc/switchboard/tls/server-key.pem \
#     -e SWITCHBOARD_AUTH_HS256_SECRET_FILE=/etc/switchboard/tls/hs256.secret switchboard
#
# It listens on 0.0.0.0, so it refuses to start without TLS or tokens (SWITCHBOARD_TLS_CERT and
# SWITCHBOARD_TLS_KEY, SWITCHBOARD_AUTH_HS256_SECRET_FILE or SWITCHBOARD_AUTH_JWKS_FILE, files
# mounted into the container) unless SWITCHBOARD_INSECURE=1 says the network is trusted
# (deploy/compose.yaml on a laptop). README, Security.
#
# Without SWITCHBOARD_REDIS_URL the router runs its private Redis (append-only, fsynced) in
# /var/lib/switchboard: mount a volume there, or name the Redis you operate (deploy/compose.yaml).
# tests/deploy/test_image.py builds the same wheel and runs this file's ENTRYPOINT, CMD, ENV and
# HEALTHCHECK as the image would; `make lint` runs hadolint on it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the project's wheel and the wheels of its dependencies -------------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml ./
COPY router ./router
COPY workers ./workers
# benchmarks: the demo's simulated center (benchmarks/workload.py) and the load generators.
COPY benchmarks ./benchmarks
# Every dependency ships manylinux wheels: no compiler is needed even here.
RUN pip wheel --wheel-dir /wheels .

# --- runtime: the wheels installed, no build tools, a non-root user -------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Skills-based routing and queueing for contact centers, over gRPC" \
      org.opencontainers.image.version="${VERSION}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SWITCHBOARD_HOST=0.0.0.0 \
    SWITCHBOARD_PORT=50051 \
    SWITCHBOARD_METRICS_PORT=9464 \
    SWITCHBOARD_DATA_DIR=/var/lib/switchboard
RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid switchboard --home-dir /var/lib/switchboard \
        --shell /usr/sbin/nologin switchboard \
    && install -d -o switchboard -g switchboard -m 0750 /var/lib/switchboard
# From the build stage's wheels only (--no-index): nothing is compiled or fetched here.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "switchboard==${VERSION}"
USER 10001:10001
WORKDIR /var/lib/switchboard
VOLUME ["/var/lib/switchboard"]
EXPOSE 50051 9464
# Liveness: the router answers its gRPC health service, SERVING (it leads) or NOT_SERVING (a
# standby, alive and ready to take over). Readiness (leader only) is `python -m router.probe`
# without --live; see deploy/kubernetes. The start period covers recovery of a large state.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "router.probe", "--live"]
# SIGTERM stops the router cleanly and hands its lease to a standby at once.
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchboard"]
CMD ["serve"]
