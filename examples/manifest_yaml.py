"""YAML for manifests that kubectl reads: kubectl parses YAML 1.1, where a bare `y`, `n`, `on` or `off`
is a boolean, so a tensor named `y` would reach the API server as the key "true". PyYAML writes such
strings bare (it resolves them as strings); this dumper quotes every one of them."""

from __future__ import annotations

import re
from typing import Any

import yaml

YAML11_BOOLEANS = re.compile(
    r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"
)


class KubectlSafeDumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if YAML11_BOOLEANS.match(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


KubectlSafeDumper.add_representer(str, _str)


def dump(doc: Any, stream: Any = None) -> Any:
    return yaml.dump(
        doc, stream, Dumper=KubectlSafeDumper, sort_keys=False, width=120, default_flow_style=None
    )
