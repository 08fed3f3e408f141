# Shared settings for the image scripts (base, build, import). Sourced, not run.
# shellcheck shell=bash
IMG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$IMG_DIR/../.." && pwd)
# shellcheck source=../controlplane/lib.sh
source "$REPO_ROOT/tools/controlplane/lib.sh"
# shellcheck source=base.env
source "$IMG_DIR/base.env"

# buildah's storage is the project's own: never /var/lib/containers (the host's), never the host's
# /run/containers. overlay needs the kernel's overlayfs (root here); INFERGATE_BUILDAH_DRIVER=vfs works
# anywhere but copies every layer in full.
IMG_CACHE=$INFERGATE_CACHE/image
BUILDAH_ROOT=${INFERGATE_BUILDAH_ROOT:-$INFERGATE_CACHE/buildah/root}
BUILDAH_RUNROOT=${INFERGATE_BUILDAH_RUNROOT:-/run/infergate/buildah}
BUILDAH_DRIVER=${INFERGATE_BUILDAH_DRIVER:-overlay}
# buildah and containers/image write big temporary files (layer diffs, archives) under TMPDIR.
export TMPDIR=$INFERGATE_CACHE/buildah/tmp

BASE_IMAGE=${INFERGATE_BASE_IMAGE:-localhost/python:3.11-slim-bookworm}
SERVER_IMAGE=localhost/infergate-server
# INFERGATE_IMAGE_TAG: the cpu variant's tag (vllm: <tag>-vllm); worktrees sharing this storage set their own.
IMAGE_TAG=${INFERGATE_IMAGE_TAG:-dev}

log() { printf '[image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# containers/image keeps a blob-info cache in /var/lib/containers/cache whenever it runs as root (no flag
# moves it), and buildah's network set-up creates /etc/cni/net.d/cni.lock even with --network host:
# buildah runs in a private mount namespace whose /var/lib and /etc are overlays with their writable
# layers in the project's cache, so the host's /var/lib and /etc stay as they were.
VARLIB_UPPER=$INFERGATE_CACHE/buildah/var-lib
ETC_UPPER=$INFERGATE_CACHE/buildah/etc
bah() {
  mkdir -p "$BUILDAH_ROOT" "$BUILDAH_RUNROOT" "$TMPDIR" "$VARLIB_UPPER/upper" "$VARLIB_UPPER/work" \
    "$ETC_UPPER/upper" "$ETC_UPPER/work"
  unshare --mount --propagation private -- /bin/bash -c '
    mount -t overlay infergate-var-lib -o "lowerdir=/var/lib,upperdir=$1/upper,workdir=$1/work" /var/lib
    mount -t overlay infergate-etc -o "lowerdir=/etc,upperdir=$2/upper,workdir=$2/work" /etc
    shift 2
    exec buildah "$@"' bah "$VARLIB_UPPER" "$ETC_UPPER" \
    --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT" --storage-driver "$BUILDAH_DRIVER" "$@"
}

# A label of an image in the project's buildah storage, empty when the image or the label is missing.
image_label() {
  bah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

# The image's id (config digest), empty when missing.
image_id() {
  bah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true
}

need() { command -v "$1" >/dev/null || die "$1 is missing (Debian package ${2:-$1})"; }
