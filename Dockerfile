# Warden in a container. Build and run: see docs/operations.md, "Running in a container".
#
#   docker build -t warden .
#
# Two stages: the first builds Warden's wheel and installs it into a virtualenv; the
# second copies only that virtualenv into a slim Python image, so no compiler, pip
# cache or source tree ships. The daemon runs as PID 1 (exec-form ENTRYPOINT): it
# handles SIGTERM itself (drains in-flight actions, exits 0) and starts no child
# processes, so no init process (tini) is needed to reap zombies.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY daemon ./daemon
# constraints.txt: the exact versions CI tested, so the image runs what passed.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/warden \
 && /opt/warden/bin/pip install --no-compile -c constraints.txt /wheels/*.whl \
 && /opt/warden/bin/python -m compileall -q /opt/warden/lib \
 && /opt/warden/bin/warden --version

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="warden" \
      org.opencontainers.image.description="Keeps the cost of development workspaces under control" \
      org.opencontainers.image.licenses="Apache-2.0"
# Inside the container only: listen on every interface so that the port can be
# published (the default, outside containers, is 127.0.0.1).
ENV PATH=/opt/warden/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WARDEN_STATE_DIR=/var/lib/warden \
    WARDEN_POLICY_PATH=/etc/warden/policies \
    WARDEN_ADMIN_BIND=0.0.0.0:8787 \
    WARDEN_LOG_FORMAT=json
RUN groupadd --system --gid 10001 warden \
 && useradd --system --uid 10001 --gid warden --no-create-home \
      --home-dir /var/lib/warden --shell /usr/sbin/nologin warden \
 && mkdir -p /var/lib/warden /etc/warden/policies \
 && chown warden:warden /var/lib/warden \
 && chmod 0700 /var/lib/warden
COPY --from=build /opt/warden /opt/warden
USER 10001:10001
WORKDIR /var/lib/warden
# The SQLite file (and nothing else Warden writes) lives here: keep it on a volume.
VOLUME ["/var/lib/warden"]
EXPOSE 8787
# Alive = the admin API answers /healthz. Follows WARDEN_ADMIN_BIND's port, and sends
# the read-only token when one is given (needed with WARDEN_PROTECT_HEALTH=true).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('WARDEN_ADMIN_BIND', '0.0.0.0:8787').rpartition(':')[2]; path = os.environ.get('WARDEN_READONLY_TOKEN_FILE'); token = os.environ.get('WARDEN_READONLY_TOKEN') or (open(path).read().strip() if path else ''); u.urlopen(u.Request(f'http://127.0.0.1:{port}/healthz', headers={'Authorization': f'Bearer {token}'} if token else {}), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["warden"]
CMD ["run"]
