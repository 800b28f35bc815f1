# ytmp3's images. Two targets, from one build:
#
#   docker build -t ytmp3 .                    the flows image (default, last stage): what
#                                              the Docker work pool runs every flow in, and
#                                              the Prefect Docker worker
#   docker build --target ui -t ytmp3-ui .     the web image: the Streamlit page and the
#                                              Prefect server (with Prefect's own UI)
#
# Classic builder compatible (no BuildKit features). The classic builder builds every stage
# above the target, so a flows build also builds (and caches) the ui stage; BuildKit skips it.
#
# Offline or air-gapped builds change build args only: the base image and pip's index, e.g.
#   docker build --build-arg BASE_IMAGE=ytmp3-stand-in:bookworm \
#     --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=http://172.17.0.1:3141/ \
#     --build-arg PIP_TRUSTED_HOST=172.17.0.1 -t ytmp3 .
# (infrastructure/docker/make-base-image.sh and serve_wheels.py make those two.)
# The base must be Debian 12 (bookworm) or a stand-in with the same apt sources: ffmpeg is
# built from the source package that base's apt serves. Empty args mean "the default".
ARG BASE_IMAGE=debian:bookworm-slim

# -- ffmpeg: a minimal build from Debian's own (patched, security-updated) source package --
# Debian's ffmpeg package pulls in ~290 MB of codec, GPU and display libraries. ytmp3 only
# probes media, decodes audio, encodes MP3 (LAME) and converts cover images to JPEG, so
# this build has just those parts, plus what yt-dlp's fixups use: remuxing, and the
# H.264/HEVC decoders, without which ffmpeg cannot size the video of an MPEG-TS (HLS)
# download and refuses to remux it. ~8 MB. It reads local files and pipes only: no network
# code at all (yt-dlp fetches everything itself, under the URL policy) and no demuxer that
# opens other inputs (HLS, concat), so a crafted download cannot make it fetch anything.
# tests/docker/ runs the project's media steps on every kind of test media with this binary.
FROM ${BASE_IMAGE:-debian:bookworm-slim} AS ffmpeg
ENV DEBIAN_FRONTEND=noninteractive
RUN if [ -f /etc/apt/sources.list.d/debian.sources ]; then \
        sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources; \
    fi \
    && if [ -f /etc/apt/sources.list ]; then \
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/src.list; \
    fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends dpkg-dev gcc libc6-dev make pkg-config \
        xz-utils libmp3lame-dev zlib1g-dev
WORKDIR /src
# -Os and no hand-written assembly: half the compile time, and LAME (its own library) is
# what a conversion spends its time in, at the same speed as Debian's ffmpeg.
RUN apt-get source --only-source ffmpeg >/dev/null \
    && cd ffmpeg-*/ \
    && ./configure --prefix=/opt/ffmpeg \
        --disable-everything --disable-autodetect --disable-doc --disable-debug \
        --disable-ffplay --disable-avdevice --disable-postproc \
        --enable-static --disable-shared --disable-x86asm --enable-small \
        --disable-network --enable-libmp3lame --enable-zlib \
        --enable-protocol=file,pipe \
        --enable-demuxer=aac,ac3,aiff,amr,ape,asf,avi,caf,eac3,flac,flv,gif,image2,image_jpeg_pipe,image_png_pipe,image_webp_pipe,image_gif_pipe,matroska,mov,mp3,mpegts,mpegps,ogg,tta,w64,wav,wv \
        --enable-decoder=aac,aac_fixed,aac_latm,ac3,eac3,alac,amrnb,amrwb,ape,flac,mp1,mp1float,mp2,mp2float,mp3,mp3float,mp3adu,opus,vorbis,tta,wavpack,wmav1,wmav2,wmapro,pcm_alaw,pcm_mulaw,pcm_s8,pcm_u8,pcm_s16be,pcm_s16le,pcm_s24be,pcm_s24le,pcm_s32be,pcm_s32le,pcm_f32be,pcm_f32le,pcm_f64le,mjpeg,png,webp,vp8,gif,bmp,h264,hevc \
        --enable-parser=aac,aac_latm,ac3,flac,mpegaudio,opus,vorbis,mjpeg,png,webp,vp8,vp9,gif,h264,hevc,av1 \
        --enable-encoder=libmp3lame,mjpeg,png,pcm_s16le \
        --enable-muxer=mp3,image2,mjpeg,mp4,ipod,mov,matroska,webm,mpegts,adts,ogg,opus,flac,wav,null \
        --enable-bsf=aac_adtstoasc,mjpeg2jpeg,setts,extract_extradata,h264_mp4toannexb,null \
        --enable-filter=aresample,aformat,anull,acopy,abuffer,abuffersink,null,copy,format,scale,buffer,buffersink \
        >/tmp/configure.log || { tail -n 30 ffbuild/config.log; exit 1; } \
    && make -j"$(nproc)" >/tmp/make.log 2>&1 || { tail -n 50 /tmp/make.log; exit 1; } \
    && make install >/dev/null \
    && strip /opt/ffmpeg/bin/ffmpeg /opt/ffmpeg/bin/ffprobe

# -- the Python environments -------------------------------------------------------------
FROM ${BASE_IMAGE:-debian:bookworm-slim} AS build
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
# Dependencies only (read from pyproject.toml), so a code change reuses these layers.
# yt-dlp and yt-dlp-ejs are taken out again: they get a layer of their own (stage ytdlp).
# Deno (yt-dlp's JS runtime, ~100 MB) stays here, in the venv's bin/, where yt-dlp looks.
COPY pyproject.toml infrastructure/docker/venv.sh infrastructure/docker/ytdlp_layer.py ./
RUN ./venv.sh install docker \
    && /opt/ytmp3/venv/bin/pip uninstall --quiet --yes yt-dlp yt-dlp-ejs \
    && ./venv.sh stage --no-prefect-ui

FROM build AS build-ui
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST
RUN ./venv.sh install docker ui \
    && /opt/ytmp3/venv/bin/pip uninstall --quiet --yes yt-dlp yt-dlp-ejs \
    && ./venv.sh stage

# -- yt-dlp: its own layer, so taking a new release rebuilds only this ---------------------
# YouTube breaks yt-dlp every few weeks. `make update-ytdlp` passes the version the local
# venv has (empty: pyproject.toml's requirement, resolved once and then cached), e.g.
#   docker build --build-arg YTDLP_VERSION=2026.10.26 -t ytmp3 .
# Only this stage and the layers after it are rebuilt; ffmpeg and the dependencies stay.
FROM build AS ytdlp
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST
ARG YTDLP_VERSION
RUN /opt/ytmp3/venv/bin/python ytdlp_layer.py "${YTDLP_VERSION}" /stage-ytdlp

# The project itself: source tree at /opt/ytmp3 (flow entrypoints such as
# flows/convert.py:convert are paths relative to the pull step's working directory, and
# ui/app.py is run from there), importable through ytmp3.pth, compiled ahead of time;
# plus what the compose services start with: the locked Docker worker and the secrets.
FROM build AS code
WORKDIR /code
COPY .streamlit/ .streamlit/
COPY flows/ flows/
COPY ui/ ui/
COPY infrastructure/docker/create_pool.py infrastructure/docker/pool_template.py \
    infrastructure/docker/worker.py infrastructure/docker/compose_secrets.py \
    infrastructure/docker/with-secrets.sh infrastructure/docker/
RUN python3 -m compileall -q --invalidation-mode unchecked-hash flows ui infrastructure

# -- run time: Python, LAME, the user ----------------------------------------------------
FROM ${BASE_IMAGE:-debian:bookworm-slim} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libmp3lame0 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 ytmp3 \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash ytmp3 \
    && mkdir -p /data \
    && chown 1000:1000 /data
COPY --from=ffmpeg /opt/ffmpeg/bin/ffmpeg /opt/ffmpeg/bin/ffprobe /usr/local/bin/
RUN ffmpeg -hide_banner -version >/dev/null && ffprobe -hide_banner -version >/dev/null
ENV PATH=/opt/ytmp3/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    YTMP3_DATA_DIR=/data \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
WORKDIR /opt/ytmp3

FROM runtime AS ui
COPY --from=build-ui /stage/opt/ytmp3/venv /opt/ytmp3/venv
COPY --from=ytdlp /stage-ytdlp/ /
COPY --from=code /code/ /opt/ytmp3/
# `prefect server start` prepares its UI bundles at start-up; the venv is read-only.
ENV PREFECT_UI_STATIC_DIRECTORY=/home/ytmp3/.cache/prefect-ui
USER 1000:1000
EXPOSE 8501 4200
CMD ["streamlit", "run", "ui/server.py", "--server.address=0.0.0.0", "--server.port=8501"]

FROM runtime AS flows
COPY --from=build /stage/opt/ytmp3/venv /opt/ytmp3/venv
COPY --from=ytdlp /stage-ytdlp/ /
COPY --from=code /code/ /opt/ytmp3/
# yt-dlp's cache (YouTube's player JS): the pool mounts the named volume ytmp3-ytdlp-cache
# here, which a new volume takes over from the image owned by uid 1000 (outside HOME,
# which is a tmpfs in flow containers).
ENV YTMP3_CACHE_DIR=/var/cache/ytmp3
RUN mkdir -p "$YTMP3_CACHE_DIR" && chown 1000:1000 "$YTMP3_CACHE_DIR"
USER 1000:1000
# yt-dlp, its JS runtime, ffmpeg, the data dir, the cookies, the Prefect API: see flows/doctor.py.
HEALTHCHECK --interval=5m --timeout=60s --start-period=30s --retries=2 \
    CMD ["python", "-m", "flows.doctor"]
CMD ["prefect", "version"]
