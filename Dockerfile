# One image for the four services and the web console. `docker run IMAGE dispatch` runs
# `lifeline-dispatch serve` (likewise monitor, resources, review, console), configured by the
# environment (docs/configuration.md).
# Build: docker build -t lifeline:0.1.0 .   (deploy/README.md has the rest)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The builder makes the wheel from the sources and installs it into a venv with exactly the
# dependencies requirements.lock names (hashes checked); tests/deploy/test_wheel.py runs the
# same steps against a fresh venv.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY libs/ libs/
COPY services/ services/
COPY plans/ plans/
COPY scenarios/ scenarios/
COPY grids/ grids/
COPY coupled_risks/ coupled_risks/
COPY roads/ roads/
COPY coverage/ coverage/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && python -m venv /opt/lifeline \
    && /opt/lifeline/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock \
    && /opt/lifeline/bin/pip install --no-cache-dir --no-deps /dist/lifeline-*.whl

FROM ${PYTHON_IMAGE}
# Nothing is written under / at run time (readOnlyRootFilesystem): bytecode is compiled at
# install, and HOME and `lifeline up`'s state live in /tmp, a volume (emptyDir on Kubernetes).
ENV PATH=/opt/lifeline/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LIFELINE_STATE_DIR=/tmp/lifeline
RUN groupadd --system --gid 10001 lifeline \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home \
       --home-dir /tmp --shell /usr/sbin/nologin lifeline
COPY --from=builder /opt/lifeline /opt/lifeline
COPY deploy/docker/entrypoint.sh /usr/local/bin/lifeline-entrypoint
USER 10001:10001
WORKDIR /tmp
VOLUME ["/tmp"]
# A service's gRPC (TLS) and plaintext health checking for probes (LIFELINE_LISTEN,
# LIFELINE_HEALTH_LISTEN); monitor's acknowledgement endpoint (LIFELINE_ACK_LISTEN, behind
# the ingress); the console's HTTPS (LIFELINE_CONSOLE_LISTEN).
EXPOSE 50051 8086 8087 8443
ENTRYPOINT ["lifeline-entrypoint"]
CMD []
