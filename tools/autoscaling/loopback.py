"""Moves listeners the upstream code hard-codes to every interface onto chosen addresses, in the build's
writable copy of a module (tools/autoscaling/build), as tools/controlplane/build does for Argo. No flag
exists for these. Each edit must apply (the old text gone, the new present) or the build stops.

    python3 loopback.py   (in the module copy; edits only the files of this list that exist there)
"""

from __future__ import annotations

import sys
from pathlib import Path

# The interceptor's admin port is where the HTTP add-on's scaler counts held requests, found through an
# EndpointSlice, which may not hold a loopback address: it binds INFERGATE_ADMIN_BIND_HOST (the real
# node's bridge address, tools/autoscaling/interceptor-up), 127.0.0.1 when unset.
ADMIN_OLD = '\t\tq,\n\t)\n\n\taddr := fmt.Sprintf("0.0.0.0:%d", port)'
ADMIN_NEW = (
    '\t\tq,\n\t)\n\n\taddr := fmt.Sprintf("%s:%d", func() string {\n'
    '\t\tif h := os.Getenv("INFERGATE_ADMIN_BIND_HOST"); h != "" {\n\t\t\treturn h\n\t\t}\n'
    '\t\treturn "127.0.0.1"\n\t}(), port)'
)
PATCHES: list[tuple[str, str, str]] = [
    (
        "cmd/adapter/main.go",
        'fmt.Sprintf(":%v", metricsAPIServerPort)',
        'fmt.Sprintf("127.0.0.1:%v", metricsAPIServerPort)',
    ),
    ("interceptor/main.go", ADMIN_OLD, ADMIN_NEW),
    ("interceptor/main.go", 'fmt.Sprintf("0.0.0.0:%d", port)', 'fmt.Sprintf("127.0.0.1:%d", port)'),
    (
        "interceptor/main.go",
        'fmt.Sprintf("0.0.0.0:%d", metricsCfg.OtelPrometheusExporterPort)',
        'fmt.Sprintf("127.0.0.1:%d", metricsCfg.OtelPrometheusExporterPort)',
    ),
    ("scaler/main.go", 'fmt.Sprintf("0.0.0.0:%d", port)', 'fmt.Sprintf("127.0.0.1:%d", port)'),
]


def main() -> int:
    for name, old, new in PATCHES:
        path = Path(name)
        if not path.is_file():
            continue
        text = path.read_text()
        if old not in text:
            print(f"{name}: {old!r} not found: the upstream code changed", file=sys.stderr)
            return 1
        path.write_text(text.replace(old, new))
    for name, _, _ in PATCHES:
        path = Path(name)
        if path.is_file() and ("0.0.0.0:%" in path.read_text() or 'Sprintf(":%' in path.read_text()):
            print(f"{name}: a listener is still on every interface", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
