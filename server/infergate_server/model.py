"""The served model: startup (verify → load → golden), readiness, and the batched infer path.

Ready means: the backend loaded, and the golden set passed for the digest of the artifact now loaded,
and the server is not draining. A supervised backend (vLLM's child) must also be live now, and the golden
pass must belong to the child now running: a child that died is not ready from that moment, and its
replacement is ready only once golden passes again. Nothing else sets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import oci
from .artifacts import ArtifactError, DigestMismatch, digest_of, verify_digest
from .backends.base import (
    GenerativeBackend,
    InlineCapable,
    Liveness,
    Supervised,
    Tensor,
    TensorBackend,
    TensorSpec,
)
from .backends.registry import Backend, create_backend
from .batching import Batcher, BatchLengthMismatch
from .codec import INLINE_BYTES, Codec
from .config import DriftConfig, PromptCase, ServerConfig, TensorCase
from .deadlines import Deadlines
from .drift import Baseline, BaselineError, DriftMonitor
from .errors import InvalidInput, ModelNotReady, RequestTimeout
from .fault import OutputFault
from .golden import CaseResult, GoldenReport, Outcome, compare_completion, compare_tensors, errored, tensor_of
from .gpus import gpus_allocated
from .hardware import probe_gpu_facts
from .metrics import Metrics
from .protocol import InferRequest
from .runtime_facts import RuntimeFacts, runtime_facts
from .sources import redact
from .startup import RECORD_DIR_ENV, read_fetch_record, size_of
from .tokenization import TextTokenizer
from .verified_stamp import unchanged_digest

if TYPE_CHECKING:
    from .shadow import Shadow

log = logging.getLogger(__name__)


class Phase(enum.StrEnum):
    STARTING = "Starting"
    VERIFYING = "Verifying"
    LOADING = "Loading"
    CHECKING = "Checking"
    READY = "Ready"
    NOT_READY = "NotReady"  # loaded, golden not passed
    FAILED = "Failed"  # a startup step failed; never becomes ready without a restart
    DRAINING = "Draining"


STARTUP_PHASES = frozenset({Phase.STARTING, Phase.VERIFYING, Phase.LOADING, Phase.CHECKING})


@dataclass
class _Work:
    tensors: dict[str, Tensor] | None
    texts: list[str] | None
    rows: int
    text_bytes: int = 0
    usage: list[float] | None = None


class ServedModel:
    def __init__(self, config: ServerConfig, metrics: Metrics, backend: Backend | None = None) -> None:
        self.config = config
        self.name = config.model.name
        self.version = config.model.version
        self.metrics = metrics
        self.backend: Backend = backend if backend is not None else create_backend(config)
        # isinstance against a runtime_checkable Protocol walks its attributes (about 15 µs on 3.11):
        # once here, not on every request.
        self._tensor_backend = self.backend if isinstance(self.backend, TensorBackend) else None
        self._supervised = self.backend if isinstance(self.backend, Supervised) else None
        self._inline = self.backend if isinstance(self.backend, InlineCapable) else None
        self.phase = Phase.STARTING
        self.reason = "starting"
        self._phase_changed = asyncio.Event()
        """Set, and replaced by a fresh one, at every phase change (wait_while_starting)."""
        self.digest: str | None = None
        self.verified_by = "server"
        """Who hashed the artifact now loaded: "server" (here, before loading) or "fetch" (this pod's fetch
        step, the files unchanged since: verified_stamp.py)."""
        self.startup_seconds: dict[str, float] = {}
        self.startup_bytes: dict[str, int] = {}
        self.startup_cache: str | None = None
        self.report: GoldenReport | None = None
        self.tokenizer: TextTokenizer | None = None
        self.runtime: RuntimeFacts | None = None
        """What runs, as observed once the backend loaded (None before)."""
        self.drift: DriftMonitor | None = None
        """Input statistics and drift score (config.drift); None when off."""
        self.shadow: Shadow | None = None
        """Copies of sampled served requests to a candidate (config.shadow); None when off."""
        if config.shadow is not None:
            # Imported only here: its HTTP client (aiohttp) costs ~0.2 s of every server start otherwise.
            from .shadow import Shadow

            self.shadow = Shadow(self.name, config.shadow, metrics)
        debug = config.debug
        self.fault: OutputFault | None = (
            OutputFault(self.name, debug.perturb_outputs_after_calls)
            if debug is not None and debug.perturb_outputs_after_calls is not None
            else None
        )
        """debug.perturbOutputsAfterCalls (a test switch); None when off, as it is unless configured."""
        self.started_at = time.monotonic()
        self.ready_after_s: float | None = None
        self._draining = False
        self._served_before_drain = False
        self._checked_at: float | None = None
        self._golden_generation: int | None = None  # the supervised backend's generation golden ran on
        self._backend_down = False  # NOT_READY was set because the supervised backend was not live
        self._background: set[asyncio.Task[GoldenReport]] = set()
        self._golden_lock = asyncio.Lock()
        rt = config.runtime
        self.batcher: Batcher[_Work, dict[str, Tensor]] = Batcher(
            self._run_batch,
            max_batch_size=rt.batching.max_batch_size,
            max_queue_delay_s=rt.batching.max_queue_delay_ms / 1000.0,
            max_queue_depth=rt.max_queue_depth,
            max_concurrent_batches=rt.max_concurrent_batches,
            on_batch=metrics.batch_size.labels(self.name).observe,
            on_busy=self._count_busy,
        )
        self._gpus = gpus_allocated()
        metrics.gpus_allocated.labels(self.name).set(self._gpus)
        self._busy = metrics.busy_seconds.labels(self.name)
        self._gpu_busy = metrics.gpu_busy_seconds.labels(self.name)
        self._deadlines = Deadlines(rt.request_timeout_seconds)
        self.codec = Codec()
        self._input_specs: dict[str, TensorSpec] = {}
        self._text_specs: dict[str, TensorSpec] = {}

    def _count_busy(self, seconds: float) -> None:
        self._busy.inc(seconds)
        if self._gpus:
            self._gpu_busy.inc(seconds * self._gpus)

    # ---- state -------------------------------------------------------------------------------------

    @property
    def is_tensor(self) -> bool:
        return self._tensor_backend is not None

    @property
    def ready(self) -> bool:
        """What readiness probes see: false from the moment draining starts, when the golden result
        has gone stale (the periodic check stopped answering), or when a supervised backend is not live
        or is a newer process than the one golden passed on."""
        return self.readiness()[0]

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): the reason says why not when a live condition overrides the phase's."""
        if self.phase is not Phase.READY or self._draining:
            return False, self.reason
        live = self.backend_liveness()
        if live is not None and not live.alive:
            return False, f"backend not live: {live.reason}"
        if live is not None and live.generation != self._golden_generation:
            return False, f"backend restarted ({live.reason}); golden not yet passed on it"
        if self.golden_stale:
            age = self.golden_age_s() or 0.0
            period = self.config.golden.period_seconds
            return False, f"golden result is {age:.0f} s old (periodSeconds {period:g})"
        return True, self.reason

    def backend_liveness(self) -> Liveness | None:
        """None for in-process backends, which live and die with this process."""
        return self._supervised.liveness() if self._supervised is not None else None

    def golden_age_s(self) -> float | None:
        return None if self._checked_at is None else time.monotonic() - self._checked_at

    @property
    def golden_due(self) -> bool:
        period = self.config.golden.period_seconds
        age = self.golden_age_s()
        return period > 0 and age is not None and age > period

    @property
    def golden_stale(self) -> bool:
        period = self.config.golden.period_seconds
        age = self.golden_age_s()
        limit = 3 * period + self.config.runtime.request_timeout_seconds * max(
            1, len(self.config.golden.cases)
        )
        return period > 0 and age is not None and age > limit

    def refresh_golden_if_due(self) -> None:
        """Called by /readyz: a due golden run starts in the background; the probe never waits for it."""
        if (
            self.golden_due
            and not self._golden_lock.locked()
            and self.phase in (Phase.READY, Phase.NOT_READY)
        ):
            task = asyncio.create_task(self.run_golden())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    @property
    def serving(self) -> bool:
        """Whether infer requests are taken: while draining, yes if the model was ready, since load
        balancers keep sending for a while after the probe flips."""
        return self.phase is Phase.READY or (self.phase is Phase.DRAINING and self._served_before_drain)

    @property
    def tensor_specs(self) -> dict[str, TensorSpec]:
        return self._input_specs

    @property
    def text_specs(self) -> dict[str, TensorSpec]:
        """The text form's input (tokenized server-side); empty without runtime.tokenizer."""
        return self._text_specs

    def declared_inputs(self) -> list[TensorSpec]:
        return [*self._input_specs.values(), *self._text_specs.values()]

    def _set(self, phase: Phase, reason: str) -> None:
        changed = phase is not self.phase
        if changed:
            log.info("model %s: %s -> %s (%s)", self.name, self.phase.value, phase.value, reason)
        self.phase, self.reason = phase, reason
        self.metrics.model_ready.labels(self.name).set(1.0 if self.ready else 0.0)
        if changed:
            self._phase_changed.set()
            self._phase_changed = asyncio.Event()

    @property
    def starting(self) -> bool:
        """Between process start and the first golden verdict (or a failed step)."""
        return self.phase in STARTUP_PHASES

    async def wait_while_starting(self, timeout_s: float) -> None:
        """Returns once startup has reached a verdict, or after `timeout_s`: lets a readiness probe that
        arrives mid-startup answer with the verdict instead of a 503 that stands for a whole probe period."""
        deadline = time.monotonic() + timeout_s
        while self.starting:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._phase_changed.wait(), left)

    def start_draining(self) -> None:
        self._served_before_drain = self.phase is Phase.READY
        self._draining = True
        self._set(Phase.DRAINING, "SIGTERM received: draining")

    # ---- startup -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """verify → load → golden; a failed step leaves the model not ready with the reason set."""
        cfg = self.config.model
        step = "verify"
        self._record_fetch()
        try:
            self._set(Phase.VERIFYING, f"verifying {cfg.path}")
            with self._phase("verify"):
                self.digest = await asyncio.to_thread(self._verify)
            self.startup_bytes["verify"] = size_of(cfg.path) if self.verified_by == "server" else 0
            self.metrics.startup_bytes.labels(self.name, "verify").set(self.startup_bytes["verify"])
            step = "load"
            self._set(Phase.LOADING, f"loading {cfg.path.name} with {self.config.runtime.backend.value}")
            started = time.perf_counter()
            await self.backend.load()
            # Backends warm up inside load(): the two are reported apart.
            warmup = float(getattr(self.backend, "warmup_seconds", 0.0))
            self._phase_took("load", time.perf_counter() - started - warmup)
            self._phase_took("warmup", warmup)
            await self._observe_runtime()
            if isinstance(self.backend, TensorBackend):
                self._input_specs = {s.name: s for s in self.backend.inputs}
                if self.config.runtime.tokenizer is not None:
                    self.tokenizer = TextTokenizer(self.config.runtime.tokenizer, self.backend.inputs)
                    self._text_specs = {self.tokenizer.spec.name: self.tokenizer.spec}
            self.batcher.start()
            if self.config.drift is not None:
                step = "drift"
                self.drift = await asyncio.to_thread(self._drift_monitor, self.config.drift)
            step = "golden"
            self._set(Phase.CHECKING, "running golden cases")
            with self._phase("golden"):
                await self.run_golden()
        except DigestMismatch as exc:
            self._fail(step, f"ArtifactDigestMismatch: {exc}")
        except Exception as exc:  # any failure must leave a reason and a metric, not a silently dead task
            self._fail(step, f"{type(exc).__name__}: {exc}")

    def _drift_monitor(self, config: DriftConfig) -> DriftMonitor:
        baseline = Baseline.load(config.baseline_path) if config.baseline_path is not None else None
        names = [s.name for s in self.declared_inputs()]
        if baseline is not None:
            unknown = sorted(set(baseline.inputs) - set(names))
            if unknown:
                raise BaselineError(
                    f"drift.baselinePath: inputs {unknown} are not the model's inputs {names}"
                )
        return DriftMonitor(self.name, config, tuple(names), self.metrics, baseline)

    async def _observe_runtime(self) -> None:
        gpus = await asyncio.to_thread(probe_gpu_facts)
        self.runtime = runtime_facts(self.config, self.backend.info, self.digest, gpus)
        self.metrics.runtime_info.labels(model=self.name, **self.runtime.labels()).set(1.0)
        log.info("model %s runs: %s", self.name, self.runtime.to_json())

    @contextlib.contextmanager
    def _phase(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._phase_took(phase, time.perf_counter() - started)

    def _phase_took(self, phase: str, seconds: float) -> None:
        self.startup_seconds[phase] = seconds
        self.metrics.startup_seconds.labels(self.name, phase).set(seconds)

    def startup_facts(self) -> dict[str, Any]:
        """This replica's start-up as measured: seconds and bytes per phase (fetch from the init container's
        record), and how its fetch used the node cache (absent without one)."""
        facts: dict[str, Any] = {
            "seconds": {k: round(v, 3) for k, v in self.startup_seconds.items()},
            "bytes": dict(self.startup_bytes),
        }
        if self.startup_cache is not None:
            facts["cache"] = self.startup_cache
        return facts

    def _record_fetch(self) -> None:
        record = read_fetch_record(self.config.model.path)
        if record is not None:
            self._phase_took("fetch", record.seconds)
            self.startup_bytes["fetch"] = record.bytes
            self.metrics.startup_bytes.labels(self.name, "fetch").set(record.bytes)
            if record.cache is not None:
                self.startup_cache = record.cache
                self.metrics.startup_cache.labels(self.name, record.cache).set(1)

    def _verify(self) -> str:
        path = self.config.model.path
        tokenizer = self.config.runtime.tokenizer
        strict = self.config.server.require_pinned
        if tokenizer is not None:
            if tokenizer.sha256 is not None:
                verify_digest(tokenizer.path, tokenizer.sha256)
            elif strict:
                raise ArtifactError("runtime.tokenizer.sha256 is not set and server.requirePinned is on")
            else:
                log.warning("runtime.tokenizer.sha256 is not set: using %s unpinned", tokenizer.path)
        trusted = self._verified_by_fetch()
        if trusted is not None:
            return trusted
        uri = self.config.model.uri
        if uri is not None and oci.is_oci(uri) and not self.config.model.image_volume:
            # Pinned by the manifest digest in the uri: the manifest the fetch kept must hash to it and every
            # file must match its layer, or nothing is loaded.
            try:
                digest = oci.verify_copy(uri, path).removeprefix("sha256:")  # the manifest's digest
            except oci.OciDigestMismatch as exc:
                raise DigestMismatch(str(exc)) from None
            except oci.OciError as exc:
                raise ArtifactError(str(exc)) from None
            if self.config.model.sha256 is not None:
                verify_digest(path, self.config.model.sha256)
            return digest
        if self.config.model.sha256 is None:
            if strict:
                raise ArtifactError("model.sha256 is not set and server.requirePinned is on")
            log.warning("model.sha256 is not set: serving %s unpinned", path)
            return digest_of(path)
        return verify_digest(path, self.config.model.sha256)

    def _verified_by_fetch(self) -> str | None:
        """The digest this pod's fetch step verified, when its stamp is for this config's pins and every file
        is still the one it verified (verified_stamp.py); None: hash it here. Only a record in the pod's own
        record directory counts (the operator sets it with a node cache: the entry is shared, the record
        not)."""
        if not os.environ.get(RECORD_DIR_ENV):
            return None
        model = self.config.model
        if model.uri is None or not (oci.is_oci(model.uri) or model.sha256 is not None):
            return None
        record = read_fetch_record(model.path)
        if record is None or record.verified is None:
            return None
        digest = unchanged_digest(record.verified, model.path, redact(model.uri), model.sha256)
        if digest is not None:
            self.verified_by = "fetch"
            log.info(
                "model %s: %s is unchanged since this pod's fetch verified it (%s)",
                self.name,
                model.path,
                digest,
            )
        return digest

    def artifact_facts(self) -> dict[str, Any]:
        """What this server itself established about the artifact it serves: the digest it computed before
        loading, and whether that digest was checked against model.sha256 (a mismatch fails startup, so a
        digest here means it matched). A signature is checked by `fetch` (the init container), not here."""
        uri = self.config.model.uri
        pinned = self.config.model.sha256 is not None or (uri is not None and oci.is_oci(uri))
        return {
            "sha256": self.digest,
            "sha256Verified": self.digest is not None and pinned,
            "verifiedBy": self.verified_by,
            "signatureConfigured": self.config.model.signature is not None,
        }

    def _fail(self, step: str, reason: str) -> None:
        self.metrics.startup_failures.labels(self.name, step).inc()
        log.error("model %s: startup step %s failed: %s", self.name, step, reason)
        self._set(Phase.FAILED, reason)

    async def stop(self) -> None:
        self._deadlines.close()
        await self.batcher.stop()
        await self.backend.unload()
        self.codec.close()

    # ---- golden ------------------------------------------------------------------------------------

    async def run_golden(self) -> GoldenReport:
        async with self._golden_lock:
            before = self.backend_liveness()
            results = [await self._run_case(c) for c in self.config.golden.cases]
            report = GoldenReport(self.digest, time.time(), tuple(results))
            self._checked_at = time.monotonic()
            for r in results:
                self.metrics.golden_checks.labels(self.name, r.outcome.value).inc()
            self.report = report
            if self.phase in (Phase.FAILED, Phase.DRAINING):
                return report
            after = self.backend_liveness()
            if before is not None and after is not None:
                self._golden_generation = before.generation
                if not after.alive or after.generation != before.generation:
                    self._backend_down = True
                    why = after.reason if not after.alive else "restarted during the golden run"
                    self._set(Phase.NOT_READY, f"backend not live: {why}")
                    return report
            self._backend_down = False
            outcome = report.outcome
            if outcome is Outcome.PASSED or (not results and not self.config.golden.required):
                if self.ready_after_s is None:
                    self.ready_after_s = time.monotonic() - self.started_at
                self._set(Phase.READY, f"golden passed ({len(results)} cases) for digest {self.digest}")
            else:
                bad = [
                    f"{r.name}: {r.outcome.value} {r.message}"
                    for r in results
                    if r.outcome is not Outcome.PASSED
                ]
                why = "; ".join(bad) or "no golden cases configured (golden.required is true)"
                self._set(Phase.NOT_READY, f"golden {outcome.value}: {why}")
            return report

    async def _run_case(self, case: TensorCase | PromptCase) -> CaseResult:
        timeout = self.config.runtime.request_timeout_seconds
        t0 = time.perf_counter()
        try:
            if isinstance(case, PromptCase):
                if not isinstance(self.backend, GenerativeBackend):
                    raise InvalidInput("a prompt case needs a generative backend")
                got = await asyncio.wait_for(
                    self.backend.complete(case.prompt, case.max_tokens, case.seed), timeout
                )
                return compare_completion(case, got, time.perf_counter() - t0)
            inputs = {n: tensor_of(t) for n, t in case.inputs.items()}
            outputs = await asyncio.wait_for(self.infer_direct(inputs), timeout)
            return compare_tensors(case, outputs, time.perf_counter() - t0)
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                exc = RequestTimeout(f"no answer within requestTimeoutSeconds={timeout}")
            return errored(case, exc, time.perf_counter() - t0)

    async def infer_direct(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        (result,) = await self._run_batch([self._work(inputs)])
        return result

    async def golden_loop(self) -> None:
        period = self.config.golden.period_seconds
        if period <= 0:
            return
        while True:
            await asyncio.sleep(period)
            if self.phase in (Phase.READY, Phase.NOT_READY):
                report = await self.run_golden()
                log.info("periodic golden: %s", report.outcome.value)

    async def watch_backend(self) -> None:
        """For a supervised backend: not ready the moment it dies or stops answering; golden again as
        soon as a new (or recovered) process is live, so readiness comes back without waiting for
        the next periodic run."""
        backend = self._supervised
        if backend is None:
            return
        while True:
            change = backend.change_event()  # taken before looking, so no change is missed meanwhile
            live = backend.liveness()
            if self.phase in (Phase.READY, Phase.NOT_READY):
                if not live.alive:
                    if self.phase is Phase.READY or self._backend_down:
                        self._backend_down = True
                        self._set(Phase.NOT_READY, f"backend not live: {live.reason}")
                elif self._backend_down or live.generation != self._golden_generation:
                    log.info("model %s: backend live again (%s): running golden", self.name, live.reason)
                    await self.run_golden()
                    continue
            await change.wait()

    # ---- data path ---------------------------------------------------------------------------------

    def _work(self, inputs: dict[str, Tensor], rows: int | None = None) -> _Work:
        if self.tokenizer is not None and self.tokenizer.spec.name in inputs:
            texts, size = self.tokenizer.texts_of(inputs[self.tokenizer.spec.name])
            return _Work(None, texts, len(texts), size)
        if rows is None:
            rows = int(next(iter(inputs.values())).shape[0])
        return _Work(inputs, None, rows)

    def check_ready(self) -> None:
        if not self.serving:
            raise ModelNotReady(
                f"model {self.name} is not ready: {self.phase.value}: {self.reason}",
                public=f"model {self.name} is not ready ({self.phase.value})",
            )

    async def infer(
        self, request: InferRequest, *, fair_share: bool = False, usage: list[float] | None = None
    ) -> dict[str, Tensor]:
        """`fair_share`: admitted over the queue's bound by its client's fair share (fairness.py).
        `usage`: gets this request's share of its batch's backend seconds appended."""
        self.check_ready()
        rows = request.rows  # texts for the text form: checked before they are decoded
        if rows > self.batcher.max_batch_size:  # as Triton: one request is at most one batch
            raise InvalidInput(
                f"{rows} rows in one request, over runtime.batching.maxBatchSize="
                f"{self.batcher.max_batch_size}: split it"
            )
        work = self._work(request.inputs, rows)
        key: object = "text" if work.texts is not None else _shape_key(request.inputs)
        work.usage = usage
        fut = self.batcher.submit(work, work.rows, key, fair_share=fair_share)
        # asyncio.wait_for would add a waiter future, callbacks and a timer per call.
        self._deadlines.add(fut)
        try:
            result = await fut
        except asyncio.CancelledError:
            self.batcher.withdraw(fut)
            if self._deadlines.expired(fut):
                timeout = self._deadlines.timeout_s
                raise RequestTimeout(f"model {self.name}: no result within {timeout:g} s") from None
            raise
        finally:
            self._deadlines.prune()
        if self.fault is not None:
            self.fault.answered()
        if self.drift is not None:  # served: its inputs count (one append; folded off this path)
            self.drift.observe(request.inputs)
        if self.shadow is not None:  # answered: a sampled copy may go to the candidate (never awaited)
            self.shadow.offer(request.inputs, result)
        return result

    async def _run_batch(self, works: Sequence[_Work]) -> list[dict[str, Tensor]]:
        backend = self._tensor_backend
        if backend is None:
            raise InvalidInput(f"model {self.name} is generative: use its OpenAI-compatible API")
        rows = [w.rows for w in works]
        total = sum(rows)
        if works[0].texts is not None:
            assert self.tokenizer is not None
            texts = [t for w in works for t in (w.texts or [])]
            if sum([w.text_bytes for w in works]) <= INLINE_BYTES:
                feed = self.tokenizer.encode(texts)
            else:
                feed = await self.codec.run(self.tokenizer.encode, texts)
        elif len(works) == 1:
            feed = works[0].tensors or {}
        else:
            feed = {
                n: np.concatenate([w.tensors[n] for w in works if w.tensors]) for n in works[0].tensors or {}
            }
        out = None
        t0 = time.perf_counter()
        if self._inline is not None and self.batcher.alone():
            out = self._inline.infer_inline(feed)
        if out is None:
            out = await backend.infer(feed)
        if self.fault is not None:
            out = self.fault.apply(out)
        took = time.perf_counter() - t0
        for w in works:
            if w.usage is not None:
                w.usage.append(took * w.rows / total)
        if len(works) == 1:
            return [out]
        for name, arr in out.items():
            if arr.ndim == 0 or arr.shape[0] != total:
                got = arr.shape[0] if arr.ndim else "no"
                raise BatchLengthMismatch(f"output '{name}' has {got} rows for a batch of {total}")
        results = []
        start = 0
        if len(out) == 1:  # one output (the usual case): a dict literal per request, not a comprehension
            ((only, arr),) = out.items()
            for n in rows:
                results.append({only: arr[start : start + n]})
                start += n
            return results
        for n in rows:
            results.append({name: arr[start : start + n] for name, arr in out.items()})
            start += n
        return results


def _shape_key(inputs: dict[str, Tensor]) -> tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...]:
    return tuple([(n, t.dtype, t.shape[1:]) for n, t in inputs.items()])
