# syntax=docker/dockerfile:1
#
# reverselb image: the server by default; the same image runs the tunnel client.
#   docker build -t reverselb .
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 -t REGISTRY/reverselb:TAG --push .
#   docker run -d -p 9999:9999 -p 8000-8099:8000-8099 -e TOKEN=... reverselb
#   docker run -d --network host -e TOKEN=... -e LB_API_ENDPOINT=host:9999 -e SERVICE_ENDPOINT=127.0.0.1:80 \
#     -e PORT=8888 -e FINGERPRINT=... reverselb tunnel
#   keep the self-signed certificate (and its fingerprint) across restarts and re-creations:
#   docker run -d -v reverselb-cert:/var/lib/reverselb -e AUTO_CERT_DIR=/var/lib/reverselb ... reverselb
#
# Node.js: the current LTS line for amd64 and arm64. Node.js 24 and later publish no 32-bit ARM
# builds (and there is no node:24+-alpine for linux/arm/v7), so linux/arm/v7 uses the newest line
# that still has them (22, maintained until April 2027).
ARG NODE_VERSION=26
ARG NODE_VERSION_ARM32=22

# Build: runs on the builder's own platform; its output (dist/ and the npm tarball) is plain
# JavaScript, so a multi-platform build compiles once, natively, not under emulation.
FROM --platform=$BUILDPLATFORM node:${NODE_VERSION}-alpine AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npx tsc -p . \
 && npm pack --ignore-scripts --pack-destination /tmp \
 && tar -xzf /tmp/reverselb-*.tgz -C /tmp \
 && mv /tmp/package /pkg \
 && cp package-lock.json /pkg/

# One runtime base per target architecture ($TARGETARCH is amd64, arm64 or arm).
FROM node:${NODE_VERSION}-alpine AS runtime-amd64
FROM node:${NODE_VERSION}-alpine AS runtime-arm64
FROM node:${NODE_VERSION_ARM32}-alpine AS runtime-arm

FROM runtime-${TARGETARCH} AS runtime
# setpriv (util-linux, not BusyBox's): --pdeathsig makes nats-server die with the server.
RUN apk add --no-cache nats-server setpriv tini \
 && addgroup -S -g 10001 reverselb \
 && adduser -S -D -H -u 10001 -G reverselb -h /app -s /sbin/nologin reverselb \
 && install -d -m 0700 -o 10001 -g 10001 /var/lib/reverselb
# Defaults of the seed's variables (PORT is left unset: the server defaults to 9999, and the
# tunnel command reads PORT as its frontend port). TOKEN is a secret: pass it at run time.
ENV NODE_ENV=production \
    LOGLEVEL=info \
    AUTO_CERT_SUBJECT_NAME=localhost \
    HTTP_PORT=0 \
    NATS_PORT=0
WORKDIR /app
# The unpacked npm tarball (package.json, dist/) plus the lockfile, owned by root: read-only for the app.
COPY --from=build /pkg/ ./
# Production dependencies only, exactly as locked. --ignore-scripts: no native build step on any
# platform (bufferutil is optional and falls back to JavaScript) and no "prepare" (tsc) run.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY deploy/docker/healthcheck.mjs ./healthcheck.mjs
USER 10001:10001
EXPOSE 9999
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["node", "/app/healthcheck.mjs"]
ENTRYPOINT ["/sbin/tini", "--", "node", "/app/dist/cli/main.js"]
CMD ["server"]
