# syntax=docker/dockerfile:1
#
# quilt-notify's container image: the release binary on distroless (glibc, CA certificates, no
# shell, no package manager), running as the non-root user, templates baked in.
#
#   docker build -t quilt-notify .
#   docker run --rm quilt-notify --help
#   docker run --rm quilt-notify validate      # needs QUILT_NOTIFY__QUEUE__URL, __SES__FROM, routes
#
# Stages:
#   chef     the Rust toolchain plus cargo-chef (from crates.io), built once and cached
#   planner  a "recipe" of the dependency graph, computed from Cargo.toml / Cargo.lock and the
#            crate's target list only (tests/ is not in the context)
#   builder  compiles the dependencies from the recipe in their own layer, so a change to the
#            crate's code does not rebuild the AWS SDK; then the crate itself, --locked
#   runtime  gcr.io/distroless/cc-debian12:nonroot + the binary + templates + config
#
# The builder is Debian 12 (bookworm), like the runtime, so the binary links against the same
# glibc. Override the toolchain with --build-arg RUST_VERSION=… (the locked dependencies need
# 1.94.1 or later). For ARM64 (Graviton Fargate) build with --platform linux/arm64.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
# The context is an allow-list (.dockerignore): manifests, sources, benches, config, events.
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Dependencies only: this layer is reused until Cargo.toml or Cargo.lock change.
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin quilt-notify --recipe-path recipe.json
# The crate. include_str! reads config/default.toml and events/package-revision.json. Benches
# and tests keep cargo-chef's stand-ins from the recipe: `cargo build --bin` does not build them.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY config config
COPY events events
RUN cargo build --release --locked --bin quilt-notify \
    && ./target/release/quilt-notify --version

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /src/target/release/quilt-notify /usr/local/bin/quilt-notify
COPY config/templates /etc/quilt-notify/templates
COPY deploy/container.toml /etc/quilt-notify/config.toml
# QUILT_NOTIFY_CONFIG: the default config file (templates dir, JSON logs). The health listener is
# on so that HEALTHCHECK, the compose health check and the ECS container health check can probe
# it with the binary itself (no curl, no shell).
ENV QUILT_NOTIFY_CONFIG=/etc/quilt-notify/config.toml \
    QUILT_NOTIFY__HEALTH__LISTEN=0.0.0.0:8080 \
    RUST_LOG=info
WORKDIR /etc/quilt-notify
USER nonroot:nonroot
EXPOSE 8080
# ECS ignores HEALTHCHECK; deploy/quilt-notify.yaml declares the same check in the task definition.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/quilt-notify", "health"]
# SIGTERM (docker stop, ECS) drains in-flight messages within worker.shutdown_deadline_seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/quilt-notify"]
CMD ["run"]
