# effect-agent-host: the server `npm start` runs, in a container.
# Build: docker build -t effect-agent-host .     Run: docker run -p 8000:8000 -v agent-host-state:/data effect-agent-host
# Checked in CI by test/Dockerfile.test.ts (hadolint-style rules); built by .ci/run when a container runtime is present.

# --- build: install everything, build the server bundle (dist/main.cjs), drop dev dependencies -----------------
FROM node:20.20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 falls back to a native build when no prebuilt binary matches.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime: the bundle, the web chat's files, production node_modules; non-root; state on a volume -------------
FROM node:20.20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    AGENT_HOST_STATE_DIR=/data
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./package.json
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist/main.cjs /app/dist/lazy.cjs ./dist/
COPY --from=build --chown=node:node /app/src/channels/WebChat/assets ./src/channels/WebChat/assets
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/readiness').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The bundle directly: scripts/start.cjs would check src/ for changes and rebuild, which an image never needs.
CMD ["node", "dist/main.cjs"]
