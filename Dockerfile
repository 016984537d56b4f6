# Spindle's container image: the WES server (`spindle serve`, the default) or a worker
# (`spindle worker`), with Snakemake, cwltool and miniwdl (with Spindle's task runner) in
# environments of their own, as `make engines` makes them. See docs/deploy.md.
#
#   docker build -t spindle .
#   podman build --build-arg BASE_IMAGE="$(deploy/build-base.sh)" -t spindle .   # no registry
#
# A build may reuse the machine's uv cache (its wheels are not copied into the image:
# UV_LINK_MODE=copy), which saves most of the downloads when `make venv engines` filled it:
#
#   podman build --volume "$(uv cache dir)":/root/.cache/uv --build-arg UV_NO_CACHE=0 ...
#
# BASE_IMAGE must be a Debian-like image with python3 (3.11) and its venv module; both
# stages use it, so the virtual environments point at the same interpreter at run time.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build

ARG UV_VERSION=0.13.9
# No cache by default (nothing is left in a layer); UV_NO_CACHE=0 with a cache mounted at
# UV_CACHE_DIR reuses the wheels there.
ARG UV_NO_CACHE=1
# uv from PyPI in a venv of its own; never a downloaded Python, always the base image's one.
# Bytecode is compiled where packages are installed (the unprivileged user cannot write it
# later); `uv sync` compiles the whole environment, so Spindle's is compiled once, at the end.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=${UV_NO_CACHE} \
    UV_CACHE_DIR=/root/.cache/uv \
    UV_SYSTEM_CERTS=1 \
    PATH=/opt/uv/bin:$PATH
RUN python3 -m venv /opt/uv \
 && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

WORKDIR /app

# Engines first: their pins change least often, so this layer is reused the longest.
COPY engines/*.txt engines/
RUN for engine in snakemake cwltool miniwdl; do \
      uv venv --quiet .engines/$engine \
      && uv pip sync --quiet --compile-bytecode --python .engines/$engine/bin/python \
           engines/$engine.txt \
      || exit 1; \
    done
# Spindle's task runner for miniwdl (a plugin of miniwdl's, never imported by Spindle), into
# miniwdl's environment as `make engines` does; it changes more often than the pins.
COPY engines/miniwdl-spindle/ engines/miniwdl-spindle/
RUN uv pip install --quiet --no-deps --compile-bytecode \
      --python .engines/miniwdl/bin/python ./engines/miniwdl-spindle

# Spindle's dependencies from the lock file alone, then Spindle itself (not editable, so
# the final stage needs only .venv, not the sources).
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src/ src/
RUN uv sync --frozen --no-dev --no-editable --compile-bytecode


FROM ${BASE_IMAGE}

# The service runs as an unprivileged user that owns only its data folder.
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin spindle \
 && mkdir -p /data \
 && chown spindle:spindle /data

COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/.engines /app/.engines

# Listen on every address of the container; the data folder is the volume. `auth` is left
# to the operator: `none` refuses a non-loopback address (set SPINDLE_AUTH=basic, oidc or
# proxy-jwt; docs/deploy.md).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SPINDLE_HOST=0.0.0.0 \
    SPINDLE_PORT=8000 \
    SPINDLE_DATA_DIR=/data \
    SPINDLE_ENGINES_DIR=/app/.engines

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

# Readiness (/readyz): the database answers, its schema is at head and the engines are
# checked (no credentials needed; docs/operations.md).
# A worker container has no HTTP port: compose and ECS turn this check off for workers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SPINDLE_PORT', '8000')}/readyz\", timeout=4)"]

ENTRYPOINT ["spindle"]
CMD ["serve"]
