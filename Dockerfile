# One image for every `cairn` subcommand.
# Build stage: compile native addons (better-sqlite3) from source and the TypeScript.
FROM node:24-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev

# Runtime: what the CSI node plugin needs to attach and format volumes
# (nbd-client for kernel nbd; nbdfuse from libnbd-bin plus a loop device where
# nbd.ko is missing; mkfs, fsck and resize for ext4 and xfs; mount and losetup;
# python3-minimal issues the loop ioctl that grows a mounted volume online).
FROM node:24-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      nbd-client libnbd-bin fuse3 e2fsprogs xfsprogs util-linux mount python3-minimal ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/cairn
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto
COPY --from=build /src/crds ./crds
# Keep freed chunk buffers in the heap instead of returning them to the kernel:
# fresh pages cost the codec ~40% of its CPU per encode (docs/adr/0002).
ENV MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_MMAP_THRESHOLD_=4194304
# Non-root by default; only the CSI node plugin's pod asks for privileges.
USER node
ENTRYPOINT ["node", "/opt/cairn/dist/cli/main.js"]
