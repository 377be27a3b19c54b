# Auditrail: the agent and the reference collector in one image.
# TypeScript runs directly on Node 24 (type stripping): no build step, only production dependencies.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The `node` devDependency pins the runtime for development; the image brings its own Node 24.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM gcr.io/distroless/nodejs24-debian12
LABEL org.opencontainers.image.title="auditrail" \
      org.opencontainers.image.description="Kubernetes audit-log agent: tails the apiserver audit log, seals hash-chained Ed25519-signed batches, ships them to an append-only collector" \
      org.opencontainers.image.source="https://github.com/auditrail/auditrail" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY agent ./agent
COPY collector ./collector
COPY proto ./proto
COPY scripts/audit-events.ts scripts/audit-log-writer.ts scripts/generate-audit-log.ts ./scripts/
# The image's default user is non-root (the collector runs so). The agent's DaemonSet sets runAsUser: 0
# with every capability dropped, because the apiserver writes its audit log as root, mode 0600.
USER nonroot
EXPOSE 9787 8443
# distroless/nodejs: the entrypoint is node itself; no shell at run time.
ENTRYPOINT ["/nodejs/bin/node", "agent/main.ts"]
CMD ["--help"]
