# drover as a container: `docker build -t drover .`, then run it with a config mounted at /etc/drover/drover.yaml
# and REDIS_URL set (the image has no redis-server; point it at your Redis, Sentinel or Cluster).
#   docker run -v $PWD/drover.yaml:/etc/drover/drover.yaml:ro -e REDIS_URL=redis://redis:6379 -p 8080:8080 drover
# The config's api.host must be 0.0.0.0 for the API and /metrics to be reachable from outside the container.

# The Node image, named on purpose (never Debian 12's own nodejs, which is 18): Node 20 by default; the current
# LTS works too (`--build-arg NODE_IMAGE=node:26-bookworm-slim`). bin/drover.js refuses a Node older than 20.
ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: compile TypeScript, then keep only production dependencies --------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json \
 && npm prune --omit=dev --no-audit --no-fund

# --- run: Node and the compiled code only, as an unprivileged user -------------------------------------------
# The node image brings its own Node (not Debian 12's nodejs 18); ssh is for qemu+ssh:// hypervisor URIs.
FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="drover" \
      org.opencontainers.image.description="Keeps libvirt/KVM clusters balanced and drains hosts with live migrations" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    DROVER_HEALTH_URL=http://127.0.0.1:8080/healthz
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
# Workload traces the simulator replays (hypervisor.kind: sim) and the shipped policies.
COPY data ./data
COPY policies ./policies
COPY drover.example.yaml ./drover.example.yaml
# JSON Schemas of the config and policy files (the examples' yaml-language-server comments point here).
COPY schemas ./schemas
# The image's `node` user (uid 1000) owns nothing but may read everything above.
USER node
EXPOSE 8080
# Liveness: /healthz on the API listener (set DROVER_HEALTH_URL if api.port is not 8080).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.DROVER_HEALTH_URL).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM (docker stop) makes drover stop taking work and hand running migrations over; give it time.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/drover.js"]
CMD ["serve", "--config", "/etc/drover/drover.yaml"]
