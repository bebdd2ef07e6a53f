#!/usr/bin/env bash
# Builds the vsip image from the project's Dockerfile with buildah (Debian's package; no
# Docker daemon), on local base images made here from Debian's packages, and prints its
# reference. Two paths:
#
#   scripts/image.sh          `make image`: Dockerfile target `prebuilt` on a binary built on
#                             this host (cargo's debug build, the one `make test` already has;
#                             VSIP_IMAGE_PROFILE=release for a release build), debug info
#                             stripped. Seconds.
#   scripts/image.sh --full   `make image-full`: the Dockerfile's full multi-stage build (cargo
#                             inside the builder stage, crates from crates.io), default target.
#                             Run it once per change of the Dockerfile (not in `make test`:
#                             a release build of every crate, 25+ minutes on 2 busy cores).
#
# Base images (made once, cached in $VSIP_CACHE/image; rebuilt when this script's recipe
# changes):
#   localhost/vsip/runtime-base:bookworm   glibc, libgcc, CA certificates, /etc/passwd with
#       nonroot (65532), /tmp; no shell, no package manager: the distroless cc image's content,
#       taken from a `debootstrap --variant=minbase bookworm` tree.
#   localhost/vsip/builder-base:bookworm   that tree with gcc and libc6-dev, plus this host's
#       Rust toolchain (Debian's rustc is too old; toolchains cannot be downloaded here).
# The image is also written as a docker-archive to $VSIP_CACHE/images/vsip.tar, which
# `make cluster-up` imports into the node's containerd (e2e/cluster/node-lib.sh).
#
# Env: VSIP_IMAGE (default localhost/vsip:dev; --full: localhost/vsip:full),
#      VSIP_IMAGE_ARCHIVE (default ~/.cache/vsip/images/vsip.tar; --full: vsip-full.tar),
#      VSIP_IMAGE_PROFILE (debug|release),
#      VSIP_DEBIAN_MIRROR (default http://deb.debian.org/debian), CARGO_TARGET_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECK_NAME=image
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"

FULL=0
case "${1:-}" in
  --full) FULL=1 ;;
  "") ;;
  *) die "unknown argument $1 (--full)" ;;
esac
VSIP_CACHE="${VSIP_CACHE:-$HOME/.cache/vsip}"
CACHE="$VSIP_CACHE/image"
if [ "$FULL" = 1 ]; then
  IMAGE="${VSIP_IMAGE:-localhost/vsip:full}"
  ARCHIVE="${VSIP_IMAGE_ARCHIVE:-$VSIP_CACHE/images/vsip-full.tar}"
else
  IMAGE="${VSIP_IMAGE:-localhost/vsip:dev}"
  ARCHIVE="${VSIP_IMAGE_ARCHIVE:-$VSIP_CACHE/images/vsip.tar}"
fi
PROFILE="${VSIP_IMAGE_PROFILE:-debug}"
MIRROR="${VSIP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
RUNTIME_BASE="localhost/vsip/runtime-base:$SUITE"
BUILDER_BASE="localhost/vsip/builder-base:$SUITE"
for t in buildah debootstrap objcopy; do
  command -v "$t" >/dev/null || die "$t is not installed (make deps)"
done
mkdir -p "$CACHE" "$VSIP_CACHE/images"
# Our own image store: nothing in /var/lib/containers. chroot isolation: RUN steps need no
# OCI runtime (crun/runc cannot set rlimits without CAP_SYS_RESOURCE on this machine).
BUILDAH=(buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver overlay)
export BUILDAH_ISOLATION=chroot
# buildah's network configuration dir (it creates it) in the cache, not /etc/cni.
printf '[network]\nnetwork_config_dir = "%s"\n' "$CACHE/cni" >"$CACHE/containers.conf"
export CONTAINERS_CONF="$CACHE/containers.conf"
# One image build at a time per cache.
exec 8>"$CACHE/.lock"
flock 8
# containers/storage bind-mounts its overlay dir onto itself (and containers' roots under
# it) and leaves that mount behind: nothing of ours stays mounted once we are done.
release_mounts() {
  local m
  awk -v d="$CACHE/storage/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
}
trap release_mounts EXIT

# Recipe stamps: a base is rebuilt when what makes it changes.
recipe() { sha256sum <<<"$*" | cut -c1-16; }
has_image() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }
label_of() { "${BUILDAH[@]}" inspect --type image --format "{{index .ImageAnnotations \"$2\"}}{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null; }

# ---------------------------------------------------------------- Debian tree
TREE="$CACHE/rootfs-$SUITE"
TREE_INCLUDES="ca-certificates,gcc,libc6-dev"
tree_stamp="$(recipe "$SUITE minbase $TREE_INCLUDES")"
if [ "$(cat "$TREE.stamp" 2>/dev/null)" != "$tree_stamp" ]; then
  say "debootstrap --variant=minbase --include=$TREE_INCLUDES $SUITE (once; a few minutes)"
  rm -rf "$TREE" "$TREE.tmp"
  t0=$(date +%s)
  debootstrap --variant=minbase --include="$TREE_INCLUDES" "$SUITE" "$TREE.tmp" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$TREE.tmp"/var/cache/apt/archives/*.deb "$TREE.tmp"/var/lib/apt/lists/*
  mv "$TREE.tmp" "$TREE"
  echo "$tree_stamp" >"$TREE.stamp"
  say "debootstrap: $(( $(date +%s) - t0 ))s"
fi

# commit_tree NAME STAMP DIR [buildah config args...]: an image whose one layer is DIR.
commit_tree() {
  local name="$1" stamp="$2" dir="$3"; shift 3
  local ctr; ctr="$("${BUILDAH[@]}" from --quiet scratch)"
  tar --numeric-owner -C "$dir" -cf "$CACHE/layer.tar" .
  "${BUILDAH[@]}" add --quiet "$ctr" "$CACHE/layer.tar" / >/dev/null
  rm -f "$CACHE/layer.tar"
  "${BUILDAH[@]}" config --label "vsip.recipe=$stamp" "$@" "$ctr"
  "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$name" >/dev/null
}

# ---------------------------------------------------------------- runtime base
# What the binary needs (ldd: libc, libm, libgcc_s) and nothing else: the files of the
# packages libc6 and libgcc-s1 (docs, locales, iconv modules and getconf aside), the CA bundle (rustls-native-certs),
# passwd/group naming root, nonroot 65532 and nobody, nsswitch.conf, and a /tmp.
RT_PKGS="libc6 libgcc-s1"
rt_stamp="$(recipe "$tree_stamp $RT_PKGS passwd-v2")"
if ! has_image "$RUNTIME_BASE" || [ "$(label_of "$RUNTIME_BASE" vsip.recipe)" != "$rt_stamp" ]; then
  say "runtime base $RUNTIME_BASE from the $SUITE tree ($RT_PKGS, CA certificates)"
  rt="$(mktemp -d "$CACHE/runtime.XXXXXX")"
  # The merged-/usr layout of the tree first (lib -> usr/lib, ...), so that the packages'
  # /lib/... paths land in usr/lib as in the tree.
  mkdir -p "$rt/usr/lib" "$rt/usr/lib64"
  for l in lib lib64; do [ -L "$TREE/$l" ] && cp -a "$TREE/$l" "$rt/$l"; done
  # shellcheck disable=SC2086
  chroot "$TREE" dpkg -L $RT_PKGS | while read -r f; do
    case "$f" in /usr/share/*|*/gconv/*|/usr/libexec/*|/.) continue ;; esac
    if [ -d "$TREE$f" ] && [ ! -L "$TREE$f" ]; then mkdir -p "$rt$f"
    else (cd "$TREE" && cp -a --parents ".$f" "$rt"); fi
  done
  mkdir -p "$rt/etc/ssl/certs" "$rt/tmp" "$rt/home/nonroot"
  cp "$TREE/etc/ssl/certs/ca-certificates.crt" "$rt/etc/ssl/certs/"
  cp "$TREE/etc/ld.so.cache" "$rt/etc/" 2>/dev/null || true
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rt/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$rt/etc/group"
  printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$rt/etc/nsswitch.conf"
  chmod 1777 "$rt/tmp"; chown 65532:65532 "$rt/home/nonroot"
  commit_tree "$RUNTIME_BASE" "$rt_stamp" "$rt" --user 65532:65532 --workingdir / \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
  rm -rf "$rt"
fi

# ---------------------------------------------------------------- builder base (full only)
if [ "$FULL" = 1 ]; then
  TOOLCHAIN="$(dirname "$(dirname "$(rustup which rustc)")")"
  RUSTV="$("$TOOLCHAIN/bin/rustc" --version | cut -d' ' -f2)"
  bl_stamp="$(recipe "$tree_stamp $RUSTV $(sha256sum /etc/ssl/certs/ca-certificates.crt) v2")"
  if ! has_image "$BUILDER_BASE" || [ "$(label_of "$BUILDER_BASE" vsip.recipe)" != "$bl_stamp" ]; then
    say "builder base $BUILDER_BASE: the $SUITE tree + this host's Rust $RUSTV"
    bl="$(mktemp -d "$CACHE/builder.XXXXXX")"
    cp -a "$TREE/." "$bl/"
    mkdir -p "$bl/usr/local/rust/bin" "$bl/usr/local/cargo"
    cp -a "$TOOLCHAIN/bin/cargo" "$TOOLCHAIN/bin/rustc" "$TOOLCHAIN/bin/rustdoc" "$bl/usr/local/rust/bin/"
    cp -a "$TOOLCHAIN/lib" "$bl/usr/local/rust/"
    [ -d "$TOOLCHAIN/libexec" ] && cp -a "$TOOLCHAIN/libexec" "$bl/usr/local/rust/"
    # The builder trusts what this host trusts (cargo fetches crates from crates.io; where
    # a TLS-inspecting proxy sits in between, its CA is in the host's bundle). The runtime
    # base keeps Debian's bundle.
    cp /etc/ssl/certs/ca-certificates.crt "$bl/etc/ssl/certs/ca-certificates.crt"
    commit_tree "$BUILDER_BASE" "$bl_stamp" "$bl" --user 0:0 --workingdir / \
      --env CARGO_HOME=/usr/local/cargo --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
      --env PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    rm -rf "$bl"
  fi
fi

# ---------------------------------------------------------------- the image
BUILD=("${BUILDAH[@]}" bud --layers --isolation chroot -f "$ROOT/Dockerfile" -t "$IMAGE"
  --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE" --build-arg "REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)")
t0=$(date +%s)
if [ "$FULL" = 1 ]; then
  say "buildah bud (full multi-stage build: cargo build --release in the builder stage)"
  "${BUILD[@]}" --build-arg "BUILDER_IMAGE=$BUILDER_BASE" "$ROOT" >"$CACHE/build-full.log" 2>&1 \
    || { tail -n 30 "$CACHE/build-full.log" >&2; die "image build failed (log: $CACHE/build-full.log)"; }
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
  if [ "$PROFILE" = release ]; then (cd "$ROOT" && cargo build --release --bins >&2); else (cd "$ROOT" && cargo build --bins >&2); fi
  ctx="$(mktemp -d "$CACHE/context.XXXXXX")"
  objcopy --strip-debug "$CARGO_TARGET_DIR/$PROFILE/vsip" "$ctx/vsip"
  say "buildah bud --target prebuilt ($PROFILE binary, $(( $(stat -c %s "$ctx/vsip") / 1048576 )) MiB stripped)"
  # BUILDER_IMAGE: a local image, so that nothing tries to resolve the public one (the
  # build stage is not built for this target).
  "${BUILD[@]}" --target prebuilt --build-arg "BUILDER_IMAGE=$RUNTIME_BASE" "$ctx" >"$CACHE/build.log" 2>&1 \
    || { tail -n 30 "$CACHE/build.log" >&2; rm -rf "$ctx"; die "image build failed (log: $CACHE/build.log)"; }
  rm -rf "$ctx"
fi
rm -f "$ARCHIVE.tmp"
"${BUILDAH[@]}" push --quiet "$IMAGE" "docker-archive:$ARCHIVE.tmp:$IMAGE" >/dev/null
mv "$ARCHIVE.tmp" "$ARCHIVE"
size="$("${BUILDAH[@]}" images --format '{{.Size}}' "$IMAGE" | head -n 1)"
say "built in $(( $(date +%s) - t0 ))s: $IMAGE ($size; archive $ARCHIVE, $(( $(stat -c %s "$ARCHIVE") / 1048576 )) MiB)"
echo "$IMAGE"
