# clickloop in a container: the runtime only, run as an unprivileged user, data in a volume.
FROM python:3.11-slim-bookworm

RUN useradd --system --create-home --home-dir /var/lib/clickloop clickloop
WORKDIR /opt/clickloop
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /opt/clickloop/src

USER clickloop
WORKDIR /var/lib/clickloop
# 0.0.0.0 inside the container; publish the port on the host's loopback behind a proxy.
ENV CLICKLOOP_DATA_DIR=/var/lib/clickloop \
    CLICKLOOP_HOST=0.0.0.0 \
    CLICKLOOP_PORT=8080
VOLUME ["/var/lib/clickloop"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
# `init` creates the database or applies pending migrations (idempotent), then serve.
CMD ["sh", "-c", "clickloop init && exec clickloop serve"]
