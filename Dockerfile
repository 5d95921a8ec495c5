# syntax=docker/dockerfile:1
#
# One image definition for every service. Build one with its target, e.g.
#   docker build --target worker -t prompt-queue-worker .
# Targets: producer, worker, dashboard, gemini-emulator (docker-compose.yml builds all four).
#
# Stages: manifests → deps (all dependencies) → build (TypeScript → dist/), and per service
# <service>-deps (production dependencies of that workspace only) → <service> (the slim runtime).

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- manifests: only what npm needs to resolve, so source edits keep the npm layers cached ----
FROM ${NODE_IMAGE} AS manifests
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY packages/shared/package.json packages/shared/
COPY packages/gemini-emulator/package.json packages/gemini-emulator/
COPY packages/client/package.json packages/client/
COPY apps/producer/package.json apps/producer/
COPY apps/worker/package.json apps/worker/
COPY apps/dashboard/package.json apps/dashboard/
# A workspace too (system tests); npm ci needs every workspace the lockfile lists.
COPY tests/package.json tests/

# ---- deps: everything, dev dependencies included, to compile ----
FROM manifests AS deps
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund

# ---- build: compile every workspace (Turborepo orders shared before the apps) ----
FROM deps AS build
ENV TURBO_TELEMETRY_DISABLED=1
COPY tsconfig.base.json turbo.json ./
COPY packages/ packages/
COPY apps/ apps/
RUN npx turbo run build

# ---- runtime base: production mode, non-root ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app

# ---- producer ----
FROM manifests AS producer-deps
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund --workspace @prompt-queue/producer

FROM runtime AS producer
# node_modules (with the workspace symlinks) and the workspace package.json files; no sources.
COPY --from=producer-deps /app ./
COPY --from=build /app/packages/shared/dist packages/shared/dist
COPY --from=build /app/apps/producer/dist apps/producer/dist
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PRODUCER_PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "apps/producer/dist/main.js"]

# ---- worker ----
FROM manifests AS worker-deps
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund --workspace @prompt-queue/worker

FROM runtime AS worker
COPY --from=worker-deps /app ./
COPY --from=build /app/packages/shared/dist packages/shared/dist
COPY --from=build /app/apps/worker/dist apps/worker/dist
USER node
# Health endpoint only (WORKER_PORT); workers take jobs from Redis, not from the network.
EXPOSE 3002
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.WORKER_PORT || 3002) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "apps/worker/dist/main.js"]

# ---- dashboard ----
FROM manifests AS dashboard-deps
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund --workspace @prompt-queue/dashboard

FROM runtime AS dashboard
COPY --from=dashboard-deps /app ./
COPY --from=build /app/packages/shared/dist packages/shared/dist
COPY --from=build /app/apps/dashboard/dist apps/dashboard/dist
USER node
EXPOSE 3001
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.DASHBOARD_PORT || 3001) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "apps/dashboard/dist/main.js"]

# ---- gemini-emulator: a local fake Gemini API, for development and load tests only ----
FROM manifests AS gemini-emulator-deps
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund --workspace @prompt-queue/gemini-emulator

FROM runtime AS gemini-emulator
COPY --from=gemini-emulator-deps /app ./
COPY --from=build /app/packages/gemini-emulator/dist packages/gemini-emulator/dist
# Inside a container it must listen beyond loopback for the workers to reach it.
ENV EMULATOR_HOST=0.0.0.0 EMULATOR_PORT=8090
USER node
EXPOSE 8090
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.EMULATOR_PORT || 8090) + '/_emulator/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "packages/gemini-emulator/dist/main.js"]
