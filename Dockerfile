# syntax=docker/dockerfile:1
# A production image: external PostgreSQL/Redis/Polygon come from the environment
# (docker-compose.yml runs the whole stack). Three stages: the front-end packages
# (node), the wheel with those files inside (Python + build tools), and the runtime
# (the wheel only, as an unprivileged user).

# GraphiQL's front-end packages, checked against web/package-lock.json by npm ci.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server server
COPY schema schema
COPY streams streams
COPY brokers brokers
COPY loadtests loadtests
COPY web/assets.txt web/package-lock.json web/
COPY --from=web /web/node_modules web/node_modules
# The files served (with their sha384) go into the package, so the wheel carries them;
# server.web.assets needs only the standard library.
RUN python -m server.web.assets install && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 --user-group tickgraph
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER tickgraph
WORKDIR /home/tickgraph
ENV TICKGRAPH_HOST=0.0.0.0 \
    TICKGRAPH_PORT=8000 \
    TICKGRAPH_ENV=production \
    TICKGRAPH_DATA_DIR=/home/tickgraph/data
EXPOSE 8000
# /healthz answers while the process serves; /readyz (database and feed) is for the
# load balancer's view, not for restarting a container whose feed is reconnecting.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('TICKGRAPH_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["tickgraph"]
CMD ["serve"]
