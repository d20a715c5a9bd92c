# syntax=docker/dockerfile:1
# gearcam itself (camera producer, web pages, loader, runtime) for linux/arm64 and linux/amd64:
#   python -m gearcam.camera | gearcam.web | gearcam.loader | gearcam.runtime
# Build: `invoke build --arch arm64v8|x64` (together with the Redis image of that architecture).
# On arm64 without the Redis modules (plan B, docs/deploy.md) this image alone serves AI.* and RG.* on the
# CPU: `invoke build --arch arm64v8 --only app`, then the `runtime` overlay.

# The Gears virtualenv's Python (see below): the official Python image of the same Debian release, so its
# interpreter runs on the libraries trixie's own python3 brings.
FROM python:3.11-slim-trixie AS gears-python

# Debian trixie: its Python 3.13 satisfies gearcam (>= 3.11), and its python3-opencv is built with
# GStreamer (the PyPI OpenCV wheels are not), which the Jetson CSI camera needs: the camera opens an
# `nvarguscamerasrc ! ... ! appsink` pipeline. On the Jetson the NVIDIA container runtime mounts the L4T
# GStreamer plugins and libargus from the host, and the pod mounts /tmp/argus_socket (deploy/base).
FROM debian:trixie-slim

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive

# Versions come with the Debian release this image is based on.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-opencv \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-tools v4l-utils ca-certificates mosquitto \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --groups video --home-dir /opt/gearcam --no-create-home gearcam \
 && install -d -o 10001 -g 10001 /media

# The venv sees Debian's cv2 (--system-site-packages). The PyPI OpenCV wheel of requirements.txt is left
# out: installed in the venv it would shadow Debian's, and it has no GStreamer.
COPY requirements.txt /opt/gearcam/requirements.txt
RUN /usr/bin/python3 -m venv --system-site-packages /opt/venv \
 && grep -v -i '^opencv-' /opt/gearcam/requirements.txt > /tmp/requirements-image.txt \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements-image.txt \
 && rm /tmp/requirements-image.txt \
 && /opt/venv/bin/python -c "import cv2, re; assert re.search(r'GStreamer:\s+YES', cv2.getBuildInformation())"

# The Gears virtualenv (docs/gears.md): Gears scripts run in worker processes with this Python and numpy 1.x,
# apart from the runtime's engines; REQUIREMENTS install into it, so the runtime's user owns it. Its pins are
# the constraints every REQUIREMENTS install obeys. numpy 1.26 has no wheel for trixie's Python 3.13 (and this
# image has no compiler), so the venv runs on Python 3.11, taken from the official image: the interpreter, its
# shared library and its standard library only (not its `python3` link, which would shadow Debian's on PATH).
# Every pin of both venvs has a wheel for its Python on both architectures: docker/image-wheels.txt, checked by
# tests/deploy/test_image_wheels.py.
COPY --from=gears-python /usr/local/bin/python3.11 /usr/local/bin/python3.11
COPY --from=gears-python /usr/local/lib/libpython3.11.so.1.0 /usr/local/lib/libpython3.11.so.1.0
COPY --from=gears-python /usr/local/lib/python3.11/ /usr/local/lib/python3.11/
COPY requirements-gears.txt /opt/gearcam/requirements-gears.txt
RUN ldconfig \
 && python3.11 -m venv /opt/venv-gears \
 && /opt/venv-gears/bin/pip install --no-cache-dir --disable-pip-version-check -r /opt/gearcam/requirements-gears.txt \
 && grep -E '^[A-Za-z0-9_.-]+==' /opt/gearcam/requirements-gears.txt > /opt/venv-gears/gearcam-constraints.txt \
 && chown -R 10001:10001 /opt/venv-gears

# gearcam runs from its source tree (PYTHONPATH), so gears/ and models/ sit where gearcam/config.py's
# PROJECT_ROOT expects them.
WORKDIR /opt/gearcam
COPY pyproject.toml README.md ./
COPY gearcam/ gearcam/
COPY gears/ gears/
COPY models/ models/

# The Jetson's GStreamer plugins (mounted by the NVIDIA runtime) live in L4T's tegra library directory.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONPATH=/opt/gearcam \
    PYTHONUNBUFFERED=1 \
    GEARCAM_RUNTIME__GEARS_PYTHON=/opt/venv-gears/bin/python \
    LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu/tegra \
    REDIS_URL=redis://127.0.0.1:6379

USER 10001:10001
EXPOSE 3000 3001
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD ["python", "-c", "import os, redis; redis.Redis.from_url(os.environ['REDIS_URL'], socket_timeout=3).ping()"]
CMD ["python", "-m", "gearcam.web"]
