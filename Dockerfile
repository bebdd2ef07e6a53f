# syntax=docker/dockerfile:1
# vsip: one image for the operator and the proxy (ENTRYPOINT ["/vsip"]):
#   docker build -t ghcr.io/vsip/vsip:0.1.0 .          (or: podman build / buildah bud)
#   args: operator ... | proxy --config FILE | proxy --kube-config-secret NS/NAME | crdgen
# Base images pinned by tag (pin by digest in your registry mirror for reproducibility).
# Where no registry is reachable, pass local bases (what `make image-full` does):
#   --build-arg BUILDER_IMAGE=<rust toolchain on Debian bookworm>
#   --build-arg RUNTIME_IMAGE=<glibc, libgcc, CA certificates, user 65532, no shell>
# Targets: the default (last) stage `runtime` builds from source; `prebuilt` packs a binary
# built on a bookworm-glibc host, placed as `vsip` at the root of the build context
# (`make image`: scripts/image.sh).
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---- build ---------------------------------------------------------------------------
FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# Dependencies first, in their own layer: only Cargo.toml/Cargo.lock changes rebuild it.
# Every target Cargo.toml declares needs a file (the bench too), so each gets a stub.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/operator_render.rs \
 && cargo build --release --locked --bin vsip \
 && rm -rf src target/release/vsip target/release/deps/vsip-* target/release/deps/libvsip-* \
           target/release/.fingerprint/vsip-*

# The sources. Their mtimes may predate the dummy build: touch them (and the fingerprints
# were removed above) so cargo rebuilds the vsip crate, never reuses the dummy.
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin vsip \
 && objcopy --strip-debug target/release/vsip /vsip \
 && /vsip --version | grep -q '^vsip ' \
 && /vsip crdgen >/dev/null

# ---- runtime base --------------------------------------------------------------------
# glibc + libgcc + CA certificates, no shell, no package manager; user 65532 (nonroot).
FROM ${RUNTIME_IMAGE} AS runtime-base
ARG RUNTIME_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="vsip" \
      org.opencontainers.image.description="Kubernetes-native FQDN-based virtual SIP trunking: operator and SIP proxy" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/vsip/vsip" \
      org.opencontainers.image.url="https://github.com/vsip/vsip" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="vsip" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
# Numeric, so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# SIP TCP, SIP TLS (container port; the Service maps 443), proxy admin, operator admin.
EXPOSE 5070/tcp 5061/tcp 9090/tcp 9091/tcp
ENTRYPOINT ["/vsip"]
CMD ["--help"]

# ---- prebuilt: a host-built binary (debug info already stripped) ----------------------
FROM runtime-base AS prebuilt
COPY --chown=0:0 --chmod=0755 vsip /vsip

# ---- runtime (default): the binary built above ---------------------------------------
FROM runtime-base AS runtime
COPY --from=build --chown=0:0 --chmod=0755 /vsip /vsip
