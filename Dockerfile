# Surge's images, built from wheels made on the host (`make images`): nothing is
# downloaded inside the build. Targets:
#   queue-proxy  the sidecar (`python -m queue_proxy`), only what it imports
#   helloworld   the example app (examples/helloworld/app.py on aiohttp)
#   surge        the control plane, activator and autoscaler (entrypoint `surge`)
# Works with the classic builder (no BuildKit syntax). BASE_IMAGE needs python3 >= 3.11
# with its venv module, and a shell for the build stages only; the runtime stages run
# no shell. Every build stage installs into a venv at /opt/venv, which the runtime
# stage copies whole, so the base's python layout (Debian's or python.org's) is moot.
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- the sidecar
FROM ${BASE_IMAGE} AS queue-proxy-build
COPY build/wheelhouse/ /wheels/
# pip runs from its own wheel and never lands in the image.
RUN python3 -m venv --without-pip /opt/venv \
 && /opt/venv/bin/python "$(ls /wheels/pip-*.whl | tail -n 1)/pip" install --no-index \
      --find-links /wheels --no-cache-dir --disable-pip-version-check --quiet \
      uvloop httptools protobuf prometheus-client
COPY build/dist/ /dist/
# Surge's wheel holds every package; the sidecar keeps dataplane and queue_proxy (the
# import-boundary test and tests/queue_proxy/test_qp_lean_imports.py pin that it needs
# no more). C sources and Cython files in the wheels are not needed to run.
RUN /opt/venv/bin/python "$(ls /wheels/pip-*.whl | tail -n 1)/pip" install --no-index \
      --no-deps --no-cache-dir --disable-pip-version-check --quiet /dist/surge-*.whl \
 && cd /opt/venv/lib/python3*/site-packages \
 && rm -rf serving activator autoscaler /opt/venv/bin/surge \
 && find /opt/venv \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' -o -name '*.c' \
      -o -name '*.h' \) -delete

FROM ${BASE_IMAGE} AS queue-proxy
COPY --from=queue-proxy-build /opt/venv /opt/venv
# Knative's queue-proxy ports: 8012 serving, 8022 admin (drain), 9090 autoscaling stats,
# 9091 Prometheus metrics. Configured by environment (queue_proxy/config.py).
EXPOSE 8012 8022 9090 9091
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532: the conventional "nonroot" user of distroless images; no home, no shell.
USER 65532:65532
ENTRYPOINT ["/opt/venv/bin/python", "-m", "queue_proxy"]

# ---------------------------------------------------------------- the example app
FROM ${BASE_IMAGE} AS helloworld-build
COPY build/wheelhouse/ /wheels/
RUN python3 -m venv --without-pip /opt/venv \
 && /opt/venv/bin/python "$(ls /wheels/pip-*.whl | tail -n 1)/pip" install --no-index \
      --find-links /wheels --no-cache-dir --disable-pip-version-check --quiet aiohttp

FROM ${BASE_IMAGE} AS helloworld
COPY --from=helloworld-build /opt/venv /opt/venv
COPY examples/helloworld/app.py /app/app.py
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8080
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/opt/venv/bin/python", "/app/app.py"]

# ---------------------------------------------------------------- the stack
FROM ${BASE_IMAGE} AS surge-build
COPY build/wheelhouse/ /wheels/
COPY build/dist/ /dist/
RUN python3 -m venv --without-pip /opt/venv \
 && /opt/venv/bin/python "$(ls /wheels/pip-*.whl | tail -n 1)/pip" install --no-index \
      --find-links /wheels --no-cache-dir --disable-pip-version-check --quiet \
      /dist/surge-*.whl

FROM ${BASE_IMAGE} AS surge
COPY --from=surge-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SURGE_STATE_DIR=/var/lib/surge
# The ingress (8080) listens on 127.0.0.1: docker-compose.yml runs this image on the
# host's network. It runs as root: with the Docker platform it drives the engine
# through its socket, which is root-equivalent whoever holds it.
EXPOSE 8080
VOLUME ["/var/lib/surge"]
ENTRYPOINT ["/opt/venv/bin/surge"]
CMD ["up", "--platform", "docker"]
