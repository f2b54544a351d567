# syntax=docker/dockerfile:1
#
# spotify-gateway container image.
#
#   docker build -t spotify-gateway:0.1.0 .
#
# The build step is `cargo build --release --locked -p spotify-gateway --no-default-features`:
# without the `demo` feature the image carries no mock Spotify and no sample app
# (`scripts/check-features.sh`, part of the test command, checks that build). Lint this file with
# `scripts/check-deploy.sh` (hadolint, no findings).
#
# Runtime layout (mount these; nothing is baked into the image but the binary):
#   /etc/spotify-gateway/gateway.toml      the config (e.g. a ConfigMap), read-only
#   /var/run/secrets/spotify-gateway/      secrets as files (e.g. a Secret), read-only; point
#                                          spotify.client_secret_file, session.secret_file and
#                                          store.password_file at them, or use the *_env keys
#   /var/lib/spotify-gateway/              the file store (store.path = ".../store.redb"); a
#                                          volume owned by the runtime user 65532. Keep it on a
#                                          persistent volume if sessions must survive restarts.
# Ports: 8080 public (browsers), 8081 egress (internal apps; the config binds it to
# 127.0.0.1, so publish it only if you rebind it), 9090 admin (/metrics /healthz /readyz).
# The container runs as the distroless `nonroot` user (uid/gid 65532) and can run with a
# read-only root filesystem: the store directory is the only place it writes.

# Builder: Debian 12 (bookworm), the same glibc as the runtime image. Bump the pin together
# with the toolchain the project's CI uses.
FROM rust:1.95-bookworm AS builder

# cmake: pingora's compression dependency builds zlib-ng from source (libz-ng-sys).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake=3.25.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY gateway/ gateway/
# Workspace members must be present for cargo to load the workspace, even those not built.
COPY mock-spotify/ mock-spotify/
COPY examples/clients/rust/ examples/clients/rust/
# The demo config is embedded in the binary (include_str!).
COPY config/ config/

# BuildKit cache mounts keep the registry and target directory between builds; the binary
# is copied out of the cached target directory so the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p spotify-gateway --no-default-features \
    && install -D -m 0755 target/release/spotify-gateway /out/spotify-gateway \
    && mkdir -p /out/store

# Runtime: glibc, libgcc, CA certificates (rustls loads the system roots for Spotify's
# HTTPS endpoints) and tzdata; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="spotify-gateway" \
      org.opencontainers.image.description="Reverse-proxy authentication gateway for the Spotify Web API" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/spotify-gateway /usr/local/bin/spotify-gateway
# The file store's directory, owned by the runtime user so a fresh volume mounted here
# (Docker named volume) inherits the ownership. In Kubernetes use fsGroup: 65532.
COPY --from=builder --chown=65532:65532 /out/store /var/lib/spotify-gateway

USER 65532:65532
VOLUME ["/var/lib/spotify-gateway"]
EXPOSE 8080 8081 9090

ENTRYPOINT ["spotify-gateway"]
CMD ["run", "--config", "/etc/spotify-gateway/gateway.toml"]
