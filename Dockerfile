# The image Prefect Docker workers run flows in; it also serves the Prefect server, the
# worker and the Streamlit page in infrastructure/compose.yml.
# Classic builder compatible (no BuildKit features). Offline or air-gapped builds set the
# base image and pip's index through build args only, e.g.
#   docker build --build-arg BASE_IMAGE=ytmp3-stand-in:bookworm \
#     --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=http://172.17.0.1:3141/ \
#     --build-arg PIP_TRUSTED_HOST=172.17.0.1 -t ytmp3 .
# (infrastructure/docker/make-base-image.sh and serve_wheels.py make those two.)
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/ytmp3/venv
WORKDIR /src
# Dependencies first, against a stub package, so code changes reuse this layer.
COPY pyproject.toml README.md* ./
RUN mkdir flows ui && touch flows/__init__.py README.md \
    && /opt/ytmp3/venv/bin/pip install '.[docker]' \
    && /opt/ytmp3/venv/bin/pip uninstall -y ytmp3 \
    && find /opt/ytmp3/venv/lib -mindepth 4 -type d -name tests -prune -exec rm -rf {} +
COPY flows/ flows/
COPY ui/ ui/
RUN /opt/ytmp3/venv/bin/pip wheel --no-deps --wheel-dir /wheels .

FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# ffmpeg's ffplay/libavdevice pull in Mesa's OpenGL drivers and LLVM (~160 MB) that are
# only ever dlopen()ed for a GL context, which audio conversion never creates: keep the
# packages (apt stays consistent) but not those files.
RUN printf 'path-exclude %s\n' '/usr/lib/*/dri/*' '/usr/lib/*/libLLVM-*' '/usr/lib/*/libz3.so*' \
        > /etc/dpkg/dpkg.cfg.d/ytmp3-no-gl-drivers \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3 ffmpeg ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 ytmp3 \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash ytmp3 \
    && mkdir -p /data \
    && chown 1000:1000 /data
COPY --from=build /opt/ytmp3/venv /opt/ytmp3/venv
# The project itself as a small layer of its own, so a code change reuses the venv layer.
COPY --from=build /wheels /tmp/wheels
RUN /opt/ytmp3/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
# The source tree too: flow entrypoints (flows/convert.py:convert) and ui/app.py are
# paths relative to the working directory that Prefect's pull step sets.
COPY pyproject.toml /opt/ytmp3/
COPY flows/ /opt/ytmp3/flows/
COPY ui/ /opt/ytmp3/ui/
ENV PATH=/opt/ytmp3/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    YTMP3_DATA_DIR=/data \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
WORKDIR /opt/ytmp3
USER 1000:1000
EXPOSE 4200 8501
CMD ["prefect", "version"]
