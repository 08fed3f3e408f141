# Shared paths for the control-plane scripts. Sourced, not run.
# shellcheck shell=bash
CP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$CP_DIR/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
CP_KEY=$(cat "$CP_DIR/versions.env" "$CP_DIR/k8s/go.mod" "$CP_DIR/etcd/go.mod" | sha256sum | cut -c1-12)
INFERGATE_CACHE=${INFERGATE_CACHE:-$HOME/.cache/infergate}
CP_HOME=${INFERGATE_CONTROLPLANE_HOME:-$INFERGATE_CACHE/controlplane/$K8S_VERSION-$CP_KEY}
CP_BIN=$CP_HOME/bin
CP_STATE=${INFERGATE_STATE_DIR:-$INFERGATE_CACHE/state}
CP_CLUSTER=${INFERGATE_CLUSTER:-infergate}
CP_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd etcdctl etcdutl kwok kwokctl helm rollouts-controller kubectl-argo-rollouts prometheus)
