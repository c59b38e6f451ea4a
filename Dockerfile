# syntax=docker/dockerfile:1
# The edgelb controller images (BuildKit):
#   docker build -t edgelb:dev .                              # SSH and local deployers (default)
#   docker build --target ansible -t edgelb:dev-ansible .      # + the Ansible deployer
#
# Stage `build` compiles the `edgelb` binary with the toolchain the workspace pins (rustls with
# the ring backend: no cmake, no OpenSSL), stripped of symbols. The default image is distroless:
# no shell, no package manager, uid 65532 (matching deploy/deployment.yaml's securityContext).
# The `ansible` image adds ansible-core, OpenSSH's client and nss_wrapper, and runs as any UID
# (OpenShift-style random UIDs too) on a read-only root filesystem: the deployer keeps
# everything it writes in its work directory (under /tmp, an emptyDir in deploy/).
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked -p edgelb --bin edgelb \
 && install -D -m 0755 target/release/edgelb /out/edgelb

FROM docker.io/library/python:3.11-slim-bookworm AS ansible
LABEL org.opencontainers.image.title="edgelb-ansible" \
      org.opencontainers.image.description="edgelb with its Ansible deployer (ansible-core)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openssh-client libnss-wrapper \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/test-requirements.txt /tmp/requirements.txt
RUN grep '^ansible-core==' /tmp/requirements.txt > /tmp/ansible.txt \
 && pip install --no-cache-dir --disable-pip-version-check -r /tmp/ansible.txt \
 && rm /tmp/requirements.txt /tmp/ansible.txt
COPY LICENSE /usr/share/doc/edgelb/LICENSE
COPY --from=build /out/edgelb /usr/local/bin/edgelb
# Nothing is written outside the deployer's work directory (a read-only root filesystem).
ENV PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/edgelb"]
CMD ["run", "--config", "/etc/edgelb/config.yaml"]

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="edgelb" \
      org.opencontainers.image.description="Keeps HAProxy on out-of-cluster edges in sync with a Kubernetes cluster, with PROXY protocol" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY LICENSE /usr/share/doc/edgelb/LICENSE
COPY --from=build /out/edgelb /usr/local/bin/edgelb
USER 65532:65532
# /healthz, /readyz, /metrics
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/edgelb"]
CMD ["run", "--config", "/etc/edgelb/config.yaml"]
