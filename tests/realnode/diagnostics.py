"""What a failed real-node test leaves behind: the namespace's pods, their containers' states and log
tails, its events, and the operator's log tail, attached to the failure's report."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client


def _container_line(status: client.V1ContainerStatus) -> str:
    state = status.state
    if state.running is not None:
        now = f"running since {state.running.started_at}"
    elif state.waiting is not None:
        now = f"waiting {state.waiting.reason}: {state.waiting.message}"
    elif state.terminated is not None:
        done = state.terminated
        now = f"terminated {done.reason} exit {done.exit_code}: {done.message}"
    else:
        now = "no state"
    return f"    {status.name}: ready={status.ready} restarts={status.restart_count} {now}"


def _log_tail(core: client.CoreV1Api, namespace: str, pod: str, container: str, lines: int) -> str:
    try:
        text: str = core.read_namespaced_pod_log(pod, namespace, container=container, tail_lines=lines)
    except client.ApiException as error:
        return f"(no log: {error.reason})"
    return text


def describe_namespace(
    api: client.ApiClient, namespace: str, operator_log: Path | None, lines: int = 40
) -> str:
    core = client.CoreV1Api(api)
    out: list[str] = [f"namespace {namespace}"]
    try:
        pods = core.list_namespaced_pod(namespace).items
        events = core.list_namespaced_event(namespace).items
    except client.ApiException as error:
        return f"namespace {namespace}: unreadable ({error.reason})"
    for pod in pods:
        where = f"pod {pod.metadata.name} on {pod.spec.node_name}"
        out.append(f"{where}: {pod.status.phase} {pod.status.reason or ''}")
        for cond in pod.status.conditions or []:
            out.append(f"    condition {cond.type}={cond.status} {cond.reason or ''} {cond.message or ''}")
        statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
        out.extend(_container_line(status) for status in statuses)
        for status in statuses:
            if status.state.running is not None or status.state.terminated is not None:
                out.append(f"  --- {status.name} log tail ---")
                out.append(_log_tail(core, namespace, pod.metadata.name, status.name, lines))
    out.append("events:")
    for event in sorted(events, key=lambda e: str(e.last_timestamp or e.event_time or "")):
        out.append(
            f"  {event.last_timestamp or event.event_time} {event.involved_object.kind}/"
            f"{event.involved_object.name} {event.type} {event.reason}: {event.message}"
        )
    if operator_log is not None and operator_log.exists():
        tail = operator_log.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"operator log tail ({operator_log}):")
        out.extend(tail)
    return "\n".join(out)
