# STAR lab image: the coordinator (`star serve`), migrations (`star db upgrade`) and the device
# agents (`star agent run`). One image for every service of docker-compose.yml.
#
#   docker build -t star-lab .
#
# The x86 agent builds the pinned llama.cpp on first use (star.runtime.ensure_runtime, a few
# minutes; cached in the star-cache volume). GGML_NATIVE=ON compiles for the host CPU, so the
# cache must stay on the machine that built it: never bake it into a shared image.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    STAR_DATA_DIR=/data

# cmake + g++: the llama.cpp build of the x86 agent; adb: the Android agent (its own adb server
# inside the container, talking to the phones over /dev/bus/usb); curl: health checks.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        adb cmake g++ make git curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/star-lab
COPY pyproject.toml README.md ./
COPY star ./star
COPY device_agents ./device_agents
COPY genomes ./genomes
COPY lab_config.yaml ./lab_config.yaml
# psycopg (PostgreSQL), uvicorn[standard] (uvloop + httptools: the coordinator's hot path)
RUN pip install . "psycopg[binary]>=3.2" "uvicorn[standard]>=0.30"

# A non-root user for the coordinator; the Android agent runs privileged (see the compose file).
RUN useradd --create-home --uid 1000 star && mkdir -p /data && chown star /data
USER star
ENV STAR_CONFIG=/opt/star-lab/lab_config.yaml
EXPOSE 8765
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
    CMD curl -fsS "http://127.0.0.1:${STAR_COORDINATOR__PORT:-8765}/healthz" || exit 1
CMD ["star", "serve", "--host", "0.0.0.0", "--port", "8765"]
