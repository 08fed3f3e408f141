#!/usr/bin/env bash
# Prints the Prometheus configuration for the real node's pods: args KUBECONFIG NODE_NAME.
# Pods annotated prometheus.io/scrape=true (every model server) are scraped by pod IP (the host routes the
# node's bridge), with their labels mapped to metric labels (rollouts-pod-template-hash becomes
# rollouts_pod_template_hash, which the canary's gates select by) plus namespace and pod.
set -euo pipefail
cat <<YAML
global: {scrape_interval: 5s, evaluation_interval: 5s}
scrape_configs:
- job_name: real-node-pods
  scrape_interval: 2s
  scrape_timeout: 2s
  kubernetes_sd_configs:
  - role: pod
    kubeconfig_file: $1
    selectors: [{role: pod, field: spec.nodeName=$2}]
  relabel_configs:
  - {source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape], action: keep, regex: "true"}
  - {source_labels: [__meta_kubernetes_pod_phase], action: keep, regex: Running}
  - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
    regex: '([^:]+)(?::\d+)?;(\d+)'
    replacement: '\$1:\$2'
    target_label: __address__
  - {source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path], regex: (.+), target_label: __metrics_path__}
  - {action: labelmap, regex: __meta_kubernetes_pod_label_(.+)}
  - {source_labels: [__meta_kubernetes_namespace], target_label: namespace}
  - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}
YAML
