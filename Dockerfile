# syntax=docker/dockerfile:1
# The eraftkv image: eraftkv-meta, eraftkv-kv, eraftkv-ctl and eraftkv-utl on PATH, run as the
# unprivileged `node` user (uid 1000) with node data under /data. One image for every role: the command picks
# the binary (deploy/kubernetes runs `eraftkv-meta ...` and `eraftkv-kv ...` in it).
#
#   docker build -t eraftkv:0.1.0 .
#   docker run --rm eraftkv:0.1.0 eraftkv-kv --help
#
# Node.js runs as PID 1 (the Kubernetes manifests `exec` it from sh): the servers handle SIGTERM
# and SIGINT themselves (a graceful stop that exits 0, packages/server-kit/src/process-lifecycle.ts)
# and start no child processes, so no init process is needed to forward signals or reap zombies.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: install every dependency, compile the TypeScript, then drop the dev dependencies ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app

# RocksDB comes from the npm package `rocksdb` (through level-rocksdb), which ships a prebuilt
# binary for linux-x64 with glibc (bookworm has glibc). Elsewhere (arm64) its install script
# compiles RocksDB with node-gyp, which needs python3, make and g++.
RUN if [ "$(dpkg --print-architecture)" != "amd64" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 make g++ \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# The manifests first, so that the dependency layer is reused while only sources change.
COPY package.json package-lock.json ./
COPY packages/cli/package.json packages/cli/
COPY packages/client/package.json packages/client/
COPY packages/kv-server/package.json packages/kv-server/
COPY packages/meta-server/package.json packages/meta-server/
COPY packages/protocol/package.json packages/protocol/
COPY packages/raft/package.json packages/raft/
COPY packages/raft-server/package.json packages/raft-server/
COPY packages/server-kit/package.json packages/server-kit/
COPY packages/test-support/package.json packages/test-support/
COPY packages/utl/package.json packages/utl/
# --ignore-scripts: the root `prepare` script builds, and the sources are not copied yet. The one
# install script the servers need is rocksdb's (it finds or compiles the native binary).
RUN npm ci --ignore-scripts --no-audit --no-fund \
    && npm rebuild rocksdb

# The generated protocol code is committed (packages/protocol/src/generated), so the build is
# `tsc -b` alone; protoc is only needed to regenerate it. Only the four binaries and what they
# reference are built (not scripts/ or the test helpers).
COPY tsconfig.base.json ./
COPY packages/ packages/
RUN npx tsc -b packages/meta-server packages/kv-server packages/cli packages/utl \
    && npm prune --omit=dev --no-audit --no-fund

# What the runtime stage takes: the production node_modules (the @eraftkv/* entries are links
# into packages/), and of each package its package.json (the binaries read their version from it),
# dist/ and bin/.
RUN mkdir -p /out/packages \
    && cp -a package.json node_modules /out/ \
    && for dir in packages/*/; do \
         name="$(basename "$dir")"; \
         mkdir -p "/out/packages/$name"; \
         cp -a "$dir/package.json" "/out/packages/$name/"; \
         if [ -d "$dir/dist" ]; then cp -a "$dir/dist" "/out/packages/$name/"; fi; \
         if [ -d "$dir/bin" ]; then cp -a "$dir/bin" "/out/packages/$name/"; fi; \
       done \
    && find /out/packages -name '*.tsbuildinfo' -delete

# ---- runtime: Node.js, the compiled packages and their production dependencies ----
FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
# Owned by root and not writable by the node user: the process can change nothing but /data.
COPY --from=build /out/ /app/
RUN ln -s /app/packages/meta-server/bin/eraftkv-meta.js /usr/local/bin/eraftkv-meta \
    && ln -s /app/packages/kv-server/bin/eraftkv-kv.js /usr/local/bin/eraftkv-kv \
    && ln -s /app/packages/cli/bin/eraftkv-ctl.js /usr/local/bin/eraftkv-ctl \
    && ln -s /app/packages/utl/bin/eraftkv-utl.js /usr/local/bin/eraftkv-utl \
    && mkdir -p /data \
    && chown 1000:1000 /data

# Each node's data dir (--data-dir) lives below /data, on a volume.
VOLUME ["/data"]
# gRPC (peers and clients) and HTTP /metrics + /health: meta 8088 and 9188, kv 7088 and 9288.
EXPOSE 8088 9188 7088 9288

# The `node` user of the Node.js image, by number so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
CMD ["eraftkv-ctl", "--help"]
