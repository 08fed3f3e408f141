"""`infergate-server serve | fetch | digest | golden record | golden check`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

import orjson
import yaml

from .config import ConfigError, GoldenConfig, ServerConfig, SignatureConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infergate-server", description="infergate model server")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve a model (OIP v2, /healthz, /readyz, /metrics)")
    s.add_argument("--config", required=True, type=Path, help="server.yaml (ServerConfig)")
    s.add_argument("--host", help="override server.host")
    s.add_argument("--port", type=int, help="override server.port")

    f = sub.add_parser("fetch", help="download + verify an artifact, then move it into place atomically")
    f.add_argument(
        "--config", type=Path, help="take uri, sha256, signature and destination (model.path) from here"
    )
    f.add_argument("--uri", help="https://, s3://, pvc://, oci://…@sha256:…, file:// or a path")
    f.add_argument(
        "--sha256",
        help="SHA-256 of a file, or manifest digest of a directory (optional for oci://…@sha256:…)",
    )
    f.add_argument("--dest", type=Path, help="where the verified artifact goes")
    f.add_argument(
        "--pvc-root",
        type=Path,
        default=Path(os.environ.get("INFERGATE_PVC_ROOT", "/mnt/pvc")),
        help="where pvc://<claim>/ is mounted, as <root>/<claim> (env INFERGATE_PVC_ROOT)",
    )
    f.add_argument(
        "--max-bytes", type=int, default=None, help="refuse a download larger than this (default 256 GiB)"
    )
    f.add_argument("--signature-bundle", help="model-signing bundle URI")
    f.add_argument("--identity", help="Sigstore identity the signature must carry")
    f.add_argument("--issuer", help="Sigstore OIDC issuer")
    f.add_argument("--public-key", help="PEM public key (key-pair signatures instead of Sigstore)")

    u = sub.add_parser("push", help="push a model file or directory to an OCI registry; print its pinned uri")
    u.add_argument("path", type=Path, help="the model file, or a directory (one layer per file)")
    u.add_argument("--to", required=True, help="oci://<registry>/<repository>[:<tag>] (tag default latest)")
    u.add_argument(
        "--image",
        action="store_true",
        help="push an OCI image (one tar layer, the model at its root) for spec.model.imageVolume",
    )
    u.add_argument(
        "--registry-auth",
        type=Path,
        default=Path(os.environ["INFERGATE_REGISTRY_AUTH_FILE"])
        if "INFERGATE_REGISTRY_AUTH_FILE" in os.environ
        else None,
        help="Docker config JSON with the registry's credentials (env INFERGATE_REGISTRY_AUTH_FILE)",
    )

    k = sub.add_parser("cache", help="the node cache")
    ks = k.add_subparsers(dest="cache_command", required=True)
    w = ks.add_parser(
        "sweep", help="re-verify the idle entries periodically; evict and report the corrupted ones"
    )
    w.add_argument("--root", required=True, type=Path, help="the node cache's root directory")
    w.add_argument(
        "--interval-seconds", type=float, default=3600.0, help="pause between sweeps (default 3600)"
    )
    w.add_argument("--once", action="store_true", help="sweep once and exit")
    w.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics here (0: none)")
    w.add_argument("--metrics-address", default="0.0.0.0", help="address the metrics port binds")

    d = sub.add_parser("digest", help="print the SHA-256 of a file or the manifest digest of a directory")
    d.add_argument("path", type=Path)

    g = sub.add_parser("golden", help="record or check golden sets")
    gs = g.add_subparsers(dest="golden_command", required=True)
    r = gs.add_parser("record", help="write a golden set from a trusted in-process run")
    r.add_argument("--config", required=True, type=Path)
    r.add_argument("--cases", type=Path, help="YAML list of cases (inputs or prompts); default: the config's")
    r.add_argument("--out", required=True, type=Path, help="YAML file to write ({cases: [...]})")
    r.add_argument("--atol", type=float, default=1e-4)
    r.add_argument("--rtol", type=float, default=1e-4)
    r.add_argument(
        "--baseline",
        action="store_true",
        help="write an input-drift baseline (JSON, for drift.baselinePath) from the cases' inputs instead",
    )
    r.add_argument("--bins", type=int, default=10, help="with --baseline: quantile bins per input")
    c = gs.add_parser("check", help="run a golden set against a running server")
    c.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    c.add_argument("--model", help="model name (default: the config's model.name)")
    c.add_argument("--config", type=Path, help="take the golden set from this server.yaml")
    c.add_argument("--golden", type=Path, help="take the golden set from this YAML ({cases: [...]})")
    c.add_argument("--timeout", type=float, default=30.0)
    c.add_argument("--json", action="store_true", help="print the results as JSON")
    return p


def _fail(message: str, code: int = 1) -> int:
    print(f"infergate-server: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("fetch", "push"):
        # An init container's whole job: no backend (numpy, asyncio) imported, a second off every cold start.
        try:
            return _fetch(args) if args.command == "fetch" else _push(args)
        except ConfigError as exc:
            return _fail(f"invalid configuration:\n{exc}", 2)
    from .backends.base import BackendError

    try:
        if args.command == "serve":
            from .config_sync import wait_for_revision_config
            from .listener import bind_listener

            wait_for_revision_config(args.config)
            cfg = ServerConfig.from_yaml(args.config)
            host = args.host or cfg.server.host
            port = cfg.server.port if args.port is None else args.port
            try:
                listener = bind_listener(host, port)
            except OSError as exc:
                return _fail(f"server.host/server.port: cannot listen on {host}:{port}: {exc}")
            from .server import serve  # uvicorn, the app, numpy, the runtime: after the socket listens

            serve(cfg, listener)
            return 0
        if args.command == "fetch":
            return _fetch(args)
        if args.command == "push":
            return _push(args)
        if args.command == "cache":
            return _sweep(args)
        if args.command == "digest":
            from .artifacts import digest_of

            print(digest_of(args.path))
            return 0
        if args.golden_command == "record":
            return _record(args)
        return _check(args)
    except ConfigError as exc:
        return _fail(f"invalid configuration:\n{exc}", 2)
    except BackendError as exc:  # e.g. BackendUnavailable: the runtime.backend cannot run on this host
        return _fail(str(exc))


def _fetch(args: argparse.Namespace) -> int:
    from . import node_cache
    from .artifacts import ArtifactError, DigestMismatch, fetch, fetch_detailed, verify_in_place
    from .sources import DEFAULT_MAX_BYTES, redact
    from .startup import FetchRecord, size_of, write_fetch_record
    from .verified_stamp import stamp_of

    logging.basicConfig(level="INFO", format="%(levelname)s %(message)s")
    # httpx logs every request's full URL at INFO: a presigned query string is a credential.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    max_bytes = args.max_bytes if args.max_bytes is not None else DEFAULT_MAX_BYTES
    signature = None
    tokenizer = None  # fetched beside the model when the config names its uri
    in_place = False  # the model is an image volume: verified where it is, nothing copied
    if args.config is not None:
        from .config_sync import wait_for_revision_config

        wait_for_revision_config(args.config)
        cfg = ServerConfig.from_yaml(args.config)
        uri, sha, dest, signature = cfg.model.uri, cfg.model.sha256, cfg.model.path, cfg.model.signature
        tokenizer = cfg.runtime.tokenizer
        in_place = cfg.model.image_volume
        if uri is None:
            return _fail(f"{args.config}: model.uri is not set", 2)
    else:
        if not (args.uri and args.dest):
            return _fail("give --config, or --uri and --dest (and --sha256)", 2)
        uri, sha, dest = args.uri, args.sha256, args.dest
        if args.signature_bundle:
            signature = SignatureConfig(
                bundle_uri=args.signature_bundle,
                identity=args.identity,
                issuer=args.issuer,
                public_key=args.public_key,
            )
    started = time.perf_counter()
    cache_root = os.environ.get(node_cache.CACHE_ENV)
    entry = node_cache.entry_for(Path(cache_root), Path(dest)) if cache_root else None
    cache: str | None = None
    stamp = None
    try:
        if in_place:
            assert sha is not None  # ModelConfig refuses imageVolume without it
            before = stamp_of(Path(dest), redact(uri), sha, "")
            digest = verify_in_place(Path(dest), sha, signature=signature, pvc_root=args.pvc_root)
            stamp = stamp_of(Path(dest), redact(uri), sha, digest)
            if before is None or stamp is None or before.files != stamp.files:
                stamp = None  # files that changed while they were hashed are not vouched for
            fetched = 0  # the kubelet pulled the image; nothing was copied here
        else:
            with node_cache.locked(entry) if entry is not None else contextlib.nullcontext():
                before = stamp_of(Path(dest), redact(uri), sha, "") if Path(dest).exists() else None
                got = fetch_detailed(
                    uri, Path(dest), sha, signature=signature, pvc_root=args.pvc_root, max_bytes=max_bytes
                )
                stamp = stamp_of(Path(dest), redact(uri), sha, got.digest)
                if got.outcome == "hit" and (before is None or stamp is None or before.files != stamp.files):
                    stamp = None  # a copy that changed while it was re-hashed is not vouched for
                if entry is not None:
                    cache = got.outcome
                    node_cache.touch(entry)
                    node_cache.write_pin(entry, node_cache.pin_for(entry, uri, sha, Path(dest)))
                    if got.outcome == "refetched":
                        node_cache.record_corruption(entry, got.detail)
            digest = got.digest
            if entry is not None and os.environ.get(node_cache.MAX_BYTES_ENV):
                node_cache.evict_lru(entry.root, int(os.environ[node_cache.MAX_BYTES_ENV]), keep=entry.key)
            fetched = size_of(Path(dest))
        if tokenizer is not None and tokenizer.uri is not None:
            fetch(
                tokenizer.uri,
                tokenizer.path,
                tokenizer.sha256,
                pvc_root=args.pvc_root,
                max_bytes=max_bytes,
                field="runtime.tokenizer.uri",
            )
            fetched += size_of(tokenizer.path)
    except DigestMismatch as exc:  # the operator reads the reason before the first ':' (status.py)
        return _fail(f"ArtifactDigestMismatch: {exc}")
    except ArtifactError as exc:
        return _fail(str(exc))
    seconds = time.perf_counter() - started
    write_fetch_record(Path(dest), FetchRecord(seconds=seconds, bytes=fetched, cache=cache, verified=stamp))
    print(digest)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .cache_events import reporter_from_env
    from .cache_sweeper import SweepSettings, run

    logging.basicConfig(level="INFO", format="%(levelname)s %(message)s")
    try:
        settings = SweepSettings(
            root=args.root,
            interval_seconds=args.interval_seconds,
            once=args.once,
            metrics_port=args.metrics_port,
            metrics_address=args.metrics_address,
        )
    except ValidationError as exc:
        flags = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        return _fail(f"invalid arguments: {flags}", 2)
    return run(settings, reporter_from_env(os.environ))


def _push(args: argparse.Namespace) -> int:
    from .oci import OciError
    from .oci_push import push

    try:
        print(push(args.path, args.to, args.registry_auth, image=args.image))
    except OciError as exc:
        return _fail(str(exc))
    return 0


def _record(args: argparse.Namespace) -> int:
    from .golden_cli import load_cases, record

    cfg = ServerConfig.from_yaml(args.config)
    if args.cases is not None:
        raw = load_cases(args.cases)
    else:
        raw = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in cfg.golden.cases]
    if not raw:
        return _fail("no cases to record (give --cases or put golden.cases in the config)", 2)
    if args.baseline:
        from .drift import BaselineError
        from .golden_cli import baseline_of

        try:
            baseline = baseline_of(cfg, raw, args.bins)
        except (BaselineError, ValueError) as exc:
            return _fail(str(exc), 2)
        args.out.write_text(baseline.to_json_text(), encoding="utf-8")
        counts = ", ".join(f"{n} {b.count} values" for n, b in sorted(baseline.inputs.items()))
        print(f"wrote the input baseline of {len(raw)} cases ({counts}) to {args.out}")
        return 0
    import asyncio

    cases = asyncio.run(record(cfg, raw, args.atol, args.rtol))
    args.out.write_text(
        yaml.safe_dump({"cases": cases}, sort_keys=False, width=120, default_flow_style=None),
        encoding="utf-8",
    )
    print(f"wrote {len(cases)} cases to {args.out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .golden import Outcome, assess
    from .golden_cli import check, load_cases

    model = args.model
    if args.golden is not None:
        golden = GoldenConfig.model_validate({"cases": load_cases(args.golden)})
    elif args.config is not None:
        cfg = ServerConfig.from_yaml(args.config)
        golden, model = cfg.golden, model or cfg.model.name
    else:
        return _fail("give --golden or --config", 2)
    if not model:
        return _fail("give --model (or --config)", 2)
    results = check(args.url, model, list(golden.cases), args.timeout)
    if args.json:
        print(orjson.dumps([r.to_json() for r in results], option=orjson.OPT_INDENT_2).decode())
    else:
        for r in results:
            err = (
                ""
                if r.max_abs_error is None
                else f" max_abs={r.max_abs_error:.3g} max_rel={r.max_rel_error:.3g}"
            )
            print(f"{r.outcome.value:12} {r.name}{err} {r.message}")
    overall = assess(r.outcome for r in results)
    print(
        f"golden: {overall.value} ({sum(r.outcome is Outcome.PASSED for r in results)}/{len(results)} passed)"
    )
    return 0 if overall is Outcome.PASSED else 1


if __name__ == "__main__":
    sys.exit(main())
