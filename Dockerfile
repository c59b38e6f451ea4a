# syntax=docker/dockerfile:1
# The edgelb controller image:  docker build -t edgelb:dev .
#
# Stage 1 builds the `edgelb` binary with the toolchain the workspace pins (rustls with the
# ring backend: no cmake, no OpenSSL). Stage 2 is distroless: no shell, no package manager,
# uid 65532 (matching deploy/deployment.yaml's securityContext).
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p edgelb --bin edgelb \
 && install -D -m 0755 target/release/edgelb /out/edgelb

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="edgelb" \
      org.opencontainers.image.description="Keeps HAProxy on out-of-cluster edges in sync with a Kubernetes cluster, with PROXY protocol" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/edgelb /usr/local/bin/edgelb
USER 65532:65532
# /healthz, /readyz, /metrics
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/edgelb"]
CMD ["run", "--config", "/etc/edgelb/config.yaml"]
