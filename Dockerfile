# syntax=docker/dockerfile:1
# The operator's image, for machines with a container engine:
#
#   docker build --build-arg VERSION="$(node -p 'require("./package.json").version')" \
#     -t ghcr.io/echo-operator/echo-operator:0.1.0 .
#
# This repository's own machines have no engine: `make image` (hack/image/build.sh) builds the
# same layout without one, and checks it. Keep the two in step: the chart runs the image as
# uid/gid 1000 with a read-only root filesystem, no command or args, configured by environment.

# The Node the project pins in package.json (devDependencies.node).
ARG NODE_VERSION=24.21.0

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
# JavaScript for production: type stripping at run time would cost about 25 MB of memory.
RUN node_modules/.bin/tsc -p tsconfig.build.json --sourceMap false

FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only. No install scripts: the only production one (protobufjs's
# postinstall) prints a version warning, and nothing should run code at build time.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:${NODE_VERSION}-bookworm-slim
ARG VERSION=dev
LABEL org.opencontainers.image.title="echo-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/echo-operator/echo-operator" \
      org.opencontainers.image.licenses="MIT"
ENV NODE_ENV=production
# The chart's operator.nodeOptions (test/e2e/image.test.ts checks they match): V8's heap sized for
# an operator (docs/benchmark.md, "Where the memory goes").
ENV NODE_OPTIONS="--max-semi-space-size=2 --max-old-space-size=160"
WORKDIR /app
# Owned by root: the operator (the base image's `node` user) can read its code, never change it.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json LICENSE ./
COPY --from=build /app/dist/operator/src ./src
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["node", "src/main.js"]
