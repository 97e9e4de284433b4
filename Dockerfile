# icmpfwd: the service (`icmpfwd serve`, healthcheck `icmpfwd health`) and the TypeScript policy
# client (`icmpfwd-policy <policy>`) in one image.
#
# Online (docker compose up, a machine that reaches Docker Hub and npm):
#   docker build --target runtime -t icmpfwd/icmpfwd:latest .
# Offline (scripts/local-images.sh): the `local` target copies artifacts prepared on the host
# (built dist/, production node_modules/, the compiled TUN addon, the host's Node 20 binary) onto
# a Debian base made with debootstrap; it runs nothing inside the build (no network there). The
# script builds it with BuildKit, which skips the online stages; the classic builder would build
# every stage before the target, so `local` comes last.

# The offline base (scripts/local-images.sh; unused by the online stages).
ARG BASE=icmpfwd-local/base:bookworm

# ---- online: build everything with npm ----
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends make g++ python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/build-native.mjs scripts/
COPY native/ native/
# clients/ts is an npm workspace: npm ci links it and its `prepare` builds it (with tsconfig.json).
COPY tsconfig.json tsconfig.build.json ./
COPY clients/ts/ clients/ts/
RUN npm ci --no-audit --no-fund
COPY proto/ proto/
COPY src/ src/
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && mkdir -p /app/native/build/Release /app/clients/ts \
 && cp -a package.json dist node_modules proto /app/ \
 && cp -a clients/ts/package.json clients/ts/dist /app/clients/ts/ \
 && cp native/build/Release/icmpfwd_tun.node /app/native/build/Release/

# ---- online: the runtime image ----
FROM node:20-bookworm-slim AS runtime
# iproute2: the service configures the kernel side of its TUN with `ip -batch`;
# iputils-ping: the compose pinger and proxy-latency --measure.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iputils-ping \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /app /app
COPY deploy/bin/ /usr/local/bin/
# In a container the gRPC and metrics listeners face the container's network; the service then
# needs credentials (ICMPFWD_TOKEN with TLS, ICMPFWD_TLS_CLIENT_CA, ICMPFWD_AUTHZ) or an explicit
# ICMPFWD_ALLOW_UNAUTHENTICATED=true, and says so at start-up (docs/security.md).
ENV NODE_ENV=production ICMPFWD_LISTEN=0.0.0.0:50051 ICMPFWD_METRICS_LISTEN=0.0.0.0:9464
ENTRYPOINT ["icmpfwd"]
CMD ["serve"]
HEALTHCHECK --interval=5s --timeout=5s --start-period=5s --retries=12 CMD ["icmpfwd", "health"]

# ---- offline: prebuilt artifacts on a local Debian base (scripts/local-images.sh) ----
# Build context: the staging directory the script fills (node, app/, bin/).
FROM ${BASE} AS local
COPY node /usr/local/bin/node
COPY app/ /app/
COPY bin/ /usr/local/bin/
# In a container the gRPC and metrics listeners face the container's network; the service then
# needs credentials (ICMPFWD_TOKEN with TLS, ICMPFWD_TLS_CLIENT_CA, ICMPFWD_AUTHZ) or an explicit
# ICMPFWD_ALLOW_UNAUTHENTICATED=true, and says so at start-up (docs/security.md).
ENV NODE_ENV=production ICMPFWD_LISTEN=0.0.0.0:50051 ICMPFWD_METRICS_LISTEN=0.0.0.0:9464
ENTRYPOINT ["icmpfwd"]
CMD ["serve"]
HEALTHCHECK --interval=5s --timeout=5s --start-period=5s --retries=12 CMD ["icmpfwd", "health"]
