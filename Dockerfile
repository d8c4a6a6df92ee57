# mlserve: a KServe V2 / TF Serving REST (and V2 gRPC) model server in a container.
#
#   docker build -t mlserve .
#   docker run --rm -p 8000:8000 -v "$PWD/packages/examples/model-repository:/models:ro" mlserve
#
# Arguments after the image name replace the default options (CMD), e.g.
#   docker run ... mlserve --grpc-port 8001 --metrics --processes auto
# The entrypoint runs the CLI's JavaScript file with node directly: no npx or npm in between, so
# `docker stop`'s SIGTERM reaches the server, which drains and exits 0.

FROM node:22-bookworm-slim AS build
# onnxruntime-node's install script downloads CUDA libraries this image does not use; the image's
# npm may not honour package.json's allowScripts, so say it here too.
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false \
    TURBO_TELEMETRY_DISABLED=1 \
    DO_NOT_TRACK=1
WORKDIR /src
COPY . .
# One step (each step copies the whole file system on some storage drivers):
# 1. every workspace's dependencies, to build. No install scripts: esbuild and turbo find their
#    platform binaries through their optional packages without them;
# 2. build the CLI and the packages it uses;
# 3. the production tree in /app: each workspace's manifest and what it publishes (its "files":
#    dist, assets such as .proto files), and only what @mlserve/cli needs at run time (its
#    dependencies and peers, from the same lockfile);
# 4. onnxruntime-node ships binaries for every platform (288 MB): keep linux-x64 (45 MB); the
#    browser runtime, source maps and browser bundles never load in this server.
RUN npm ci --ignore-scripts \
 && npx turbo run build --filter=@mlserve/cli... --output-logs=errors-only \
 && mkdir -p /app \
 && cp package.json package-lock.json /app/ \
 && node -e "const fs = require('fs'); \
      for (const name of fs.readdirSync('packages')) { \
        const dir = 'packages/' + name; \
        if (!fs.existsSync(dir + '/package.json')) continue; \
        const files = JSON.parse(fs.readFileSync(dir + '/package.json', 'utf8')).files || []; \
        for (const f of ['package.json', ...files]) \
          if (fs.existsSync(dir + '/' + f)) fs.cpSync(dir + '/' + f, '/app/' + dir + '/' + f, { recursive: true }); \
      }" \
 && cd /app \
 && npm ci --omit=dev --ignore-scripts -w @mlserve/cli \
 && find node_modules/onnxruntime-node/bin -mindepth 3 -maxdepth 3 ! -path '*/linux/x64' -exec rm -rf {} + \
 && rm -rf node_modules/onnxruntime-web \
 && find node_modules packages -name '*.map' -delete \
 && find node_modules/@tensorflow -path '*/dist/*' \( -name '*.min.js' -o -name '*.min.js.html' -o -name '*.es2017.js' -o -name '*.fesm.js' \) -delete \
 && node -e "require('onnxruntime-node')" \
 && node packages/cli/dist/cli.js --version \
 && rm -rf /src /root/.npm /tmp/*

FROM node:22-bookworm-slim
LABEL org.opencontainers.image.title="mlserve" \
      org.opencontainers.image.description="KServe V2 and TF Serving REST (and V2 gRPC) model server for ONNX and TF.js models" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/mlserve/mlserve" \
      org.opencontainers.image.documentation="https://github.com/mlserve/mlserve#run-it-in-a-container" \
      org.opencontainers.image.base.name="docker.io/library/node:22-bookworm-slim"
ENV NODE_ENV=production \
    ONNXRUNTIME_NODE_INSTALL=skip
# Owned by root and read-only to the server's user; the server writes nothing but /tmp.
COPY --from=build /app /app
RUN mkdir -p /models && chown node:node /models
VOLUME /models
# 8000 HTTP (V2, TF Serving REST, health, /metrics), 8001 gRPC (with --grpc-port 8001),
# 8002 Prometheus (with --metrics-port 8002).
EXPOSE 8000 8001 8002
USER node
WORKDIR /home/node
# The readiness route: healthy once every model in /models is loaded (and, with --processes, once
# every process is); unhealthy while draining. Uses the image's node (no curl in slim images).
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.MLSERVE_PORT||8000)+'/v2/health/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM: readiness turns 503, accepted requests finish, exit 0. Give `docker stop -t` (and
# Kubernetes' terminationGracePeriodSeconds) more than --shutdown-delay plus the longest request.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/packages/cli/dist/cli.js", "serve", "--model-repository", "/models", "--host", "0.0.0.0"]
CMD ["--port", "8000"]
