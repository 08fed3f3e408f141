# Shared paths for the autoscaling scripts. Sourced, not run.
# shellcheck shell=bash
AS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../controlplane/lib.sh
source "$AS_DIR/../controlplane/lib.sh"
# Keyed by the versions and by the edits the build makes to the sources (loopback.py).
AS_KEY=$(printf '%s\n' "$GO_VERSION" "$METRICS_SERVER_VERSION" "$KEDA_VERSION" "$KEDA_HTTP_ADDON_VERSION" \
  | cat - "$AS_DIR/loopback.py" | sha256sum | cut -c1-12)
AS_HOME=${INFERGATE_AUTOSCALING_HOME:-$INFERGATE_CACHE/autoscaling/$KEDA_VERSION-$AS_KEY}
AS_BIN=$AS_HOME/bin
AS_BINARIES=(metrics-server keda-operator keda-adapter keda-http-interceptor keda-http-scaler)
