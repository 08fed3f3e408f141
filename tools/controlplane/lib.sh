# Shared paths for the control-plane scripts. Sourced, not run.
# shellcheck shell=bash
CP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$CP_DIR/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
# The control plane's key covers versions.env down to the "components with their own cache" line: a
# component pinned below it rebuilds alone, into $COMPONENTS/<name>-<version> (component_dir).
CP_KEY=$({ sed '/^# ---- components with their own cache/,$d' "$CP_DIR/versions.env"
  cat "$CP_DIR/k8s/go.mod" "$CP_DIR/etcd/go.mod"; } | sha256sum | cut -c1-12)
INFERGATE_CACHE=${INFERGATE_CACHE:-$HOME/.cache/infergate}
COMPONENTS=$INFERGATE_CACHE/components
component_dir() { echo "$COMPONENTS/$1-$2"; }  # name version
PROMETHEUS_SD_BIN=$(component_dir prometheus "$PROMETHEUS_VERSION")/prometheus
REGISTRY_BIN=$(component_dir registry "$DISTRIBUTION_VERSION")/registry
CP_HOME=${INFERGATE_CONTROLPLANE_HOME:-$INFERGATE_CACHE/controlplane/$K8S_VERSION-$CP_KEY}
CP_BIN=$CP_HOME/bin
CP_STATE=${INFERGATE_STATE_DIR:-$INFERGATE_CACHE/state}
CP_CLUSTER=${INFERGATE_CLUSTER:-infergate}
CP_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd etcdctl etcdutl kwok kwokctl helm rollouts-controller kubectl-argo-rollouts prometheus)
# The real node (node-up / node-down, DESIGN.md §10). One per host: these names are host-wide.
NODE_NAME=real-cpu-0
NODE_BRIDGE=igreal0
NODE_IP=10.88.0.1
NODE_POD_SUBNET=10.88.0.0/24
NODE_POD_RANGE_START=10.88.0.10
# The apiserver's Service range (up). node-up refuses what kube-proxy leaves unrouted in it.
SERVICE_CIDR=10.96.0.0/16
NODE_UNROUTED_CHAIN=INFERGATE-UNROUTED-SVC
NODE_CGROUP_ROOT=infergate-real
NODE_PAUSE_IMAGE=localhost/pause:3.10-infergate
NODE_OWNER=$INFERGATE_CACHE/realnode/owner
NODE_DIR=${INFERGATE_NODE_DIR:-$CP_STATE/clusters/$CP_CLUSTER/node}
NODE_CONTAINERD_SOCK=$NODE_DIR/containerd.sock
# The image store; node-down removes it unless INFERGATE_KEEP_NODE_IMAGES=1.
NODE_CONTAINERD_ROOT=$CP_STATE/containerd/$CP_CLUSTER
CNI_BIN_DIR=/usr/lib/cni
# Fixed paths (the kubelet's device-plugin and pod-resources sockets, the shims' sockets, libcni's cache).
NODE_DEFAULT_PATHS=(/var/lib/kubelet /run/containerd /var/lib/cni /opt/containerd /var/lib/containerd /run/netns /var/run/netns /etc/cni)
