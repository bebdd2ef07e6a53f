# syntax=docker/dockerfile:1
# vsip: one image for the operator and the proxy (ENTRYPOINT ["/vsip"]):
#   docker build -t ghcr.io/vsip/vsip:0.1.0 .
#   args: operator ... | proxy --config FILE | proxy --kube-config-secret NS/NAME | crdgen
# Base images pinned by tag (pin by digest in your registry mirror for reproducibility).

# ---- build ---------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# Dependencies first, in their own layer: only Cargo.toml/Cargo.lock changes rebuild it.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin vsip \
 && rm -rf src target/release/vsip target/release/deps/vsip-* target/release/deps/libvsip-* \
           target/release/.fingerprint/vsip-*

# The sources. Their mtimes may predate the dummy build: touch them (and the fingerprints
# were removed above) so cargo rebuilds the vsip crate, never reuses the dummy.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin vsip \
 && cp target/release/vsip /vsip \
 && /vsip --version | grep -q '^vsip ' \
 && /vsip crdgen >/dev/null

# ---- runtime -------------------------------------------------------------------------
# glibc + libgcc + CA certificates, no shell, no package manager; user 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
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
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build --chown=0:0 --chmod=0755 /vsip /vsip
# Numeric, so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# SIP TCP, SIP TLS (container port; the Service maps 443), proxy admin, operator admin.
EXPOSE 5070/tcp 5061/tcp 9090/tcp 9091/tcp
ENTRYPOINT ["/vsip"]
CMD ["--help"]
