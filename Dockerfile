# Auditrail: the agent, the reference collector and their tools in one image.
# The image runs the compiled and bundled JavaScript (scripts/build.ts says why), with production dependencies only.
#   docker build -t ghcr.io/auditrail/auditrail:0.1.0 .
# Pin both base images by digest (FROM image@sha256:...) in release builds.

# Stage 1: production dependencies, installed exactly from the lockfile. The `node` devDependency that
# pins the runtime for development is left out (--omit=dev): the image's own Node 24 runs the code.
# --ignore-scripts: no install script runs at build time (none of the production dependencies needs one).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# Stage 2: the JavaScript. The full lockfile (TypeScript and esbuild are devDependencies; esbuild needs no install
# script, its binary is the platform's optional package); nothing of this stage but dist/ goes on.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY proto ./proto
COPY shared ./shared
COPY agent ./agent
COPY collector ./collector
# The auditrail binary (programs/main.ts) and the demo compose the agent and the collector.
COPY programs ./programs
# The demo (auditrail demo) writes its audit log with the generator; scripts/build.ts compiles it all.
COPY scripts/build.ts scripts/audit-events.ts scripts/audit-log-writer.ts scripts/generate-audit-log.ts ./scripts/
RUN node scripts/build.ts --out /app/dist

# Stage 3: distroless Node 24: no shell, no package manager, nothing but node and its libraries.
FROM gcr.io/distroless/nodejs24-debian12
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="auditrail" \
      org.opencontainers.image.description="Kubernetes audit-log agent: tails the kube-apiserver audit log, checks guardrails, seals hash-chained Ed25519-signed batches and ships them to an append-only collector" \
      org.opencontainers.image.source="https://github.com/auditrail/auditrail" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/nodejs24-debian12"
# distroless keeps node in /nodejs/bin; on PATH so that the entrypoint (and `kubectl exec ... node`) finds it.
# MALLOC_ARENA_MAX: the agent's environment (agent/process-settings.ts says why; a test holds this line to it).
ENV PATH=/nodejs/bin:/usr/local/bin:/usr/bin:/bin \
    NODE_ENV=production \
    MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
# The source tree's layout, in JavaScript, with the rule packs and the .proto, and package.json ("type": "module").
COPY --from=build /app/dist ./
# The image's user is distroless' non-root "nonroot" (uid 65532): the collector and the tools run so.
# The agent's DaemonSet overrides it with runAsUser: 0 and every capability dropped, because the
# apiserver writes its audit log as root, mode 0600 (docs/install.md, "Choices made for you").
USER 65532:65532
# 9787: the agent's /metrics, /livez, /readyz. 8443: the collector.
EXPOSE 9787 8443
# The agent's V8 flags (agent/process-settings.ts says why; a test holds this line to it).
ENTRYPOINT ["node", "--max-semi-space-size=4", "--no-concurrent-recompilation", "--liftoff-only", "programs/main.js"]
CMD ["--help"]
