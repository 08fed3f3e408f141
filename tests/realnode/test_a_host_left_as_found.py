"""`tools/controlplane/down` leaves the host as `up` found it, after real pods ran on the real node.

Runs first in this tier, on a cluster of its own (the host has one real node), before the session's."""

from __future__ import annotations

import os

import pytest

from tests.integration.controlplane import start
from tests.integration.waiting import wait_for
from tests.realnode import hoststate

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

POD = """
apiVersion: v1
kind: ConfigMap
metadata: {name: probe}
data: {hello: world}
---
apiVersion: v1
kind: Pod
metadata: {name: probe, labels: {app: probe}}
spec:
  nodeSelector: {infergate.io/node-kind: real}
  tolerations: [{key: infergate.io/node-kind, operator: Equal, value: real, effect: NoSchedule}]
  securityContext: {runAsNonRoot: true, runAsUser: 65535, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: pause
    image: localhost/pause:3.10-infergate
    imagePullPolicy: Never
    ports: [{containerPort: 8080}]
    resources: {limits: {cpu: 50m, memory: 32Mi}}
    securityContext:
      {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true}
    volumeMounts: [{name: config, mountPath: /config}, {name: scratch, mountPath: /scratch}]
  volumes:
  - {name: config, configMap: {name: probe}}
  - {name: scratch, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: probe}
spec:
  selector: {app: probe}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_down_leaves_the_host_as_found() -> None:
    before = hoststate.snapshot()
    plane = start(f"igreal-host-{os.getpid()}", real_node=True)
    try:
        plane.kubectl("apply", "-f", "-", stdin=POD)
        plane.kubectl("wait", "--for=condition=Ready", "pod/probe", "--timeout=120s")
        # kube-proxy has written the Service's rules: the node changed the host while it ran.
        rules_written = lambda: any("probe" in rule for rule in hoststate.iptables())  # noqa: E731
        wait_for(rules_written, 30, "kube-proxy's rules for the Service")
        during = hoststate.differences(before, hoststate.snapshot())
        assert {"iptables", "links", "mounts", "cgroups"} <= during.keys(), during
    finally:
        plane.down()
    assert hoststate.differences(before, hoststate.snapshot()) == {}
