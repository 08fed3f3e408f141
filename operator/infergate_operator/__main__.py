"""`python -m infergate_operator`: runs the operator against $KUBECONFIG (or the in-cluster account)."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys

# kopf imports the generated `kubernetes` client whenever it is importable, only to offer logins and
# owner references through its models. The operator speaks REST itself (kube.py), so keep those tens
# of MB out of the process; `import kubernetes` then raises ImportError, which kopf expects.
if "kubernetes" not in sys.modules:
    sys.modules["kubernetes"] = None  # type: ignore[assignment]

import kopf
from prometheus_client import start_http_server

from infergate_operator import handlers, wake_timeout
from infergate_operator.peering import PeeringGate, own_identity
from infergate_operator.settings import OperatorSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="infergate-operator", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--standalone", action="store_true", help="no peering: for one-off runs where no other copy can exist"
    )
    args = parser.parse_args(argv)
    settings = OperatorSettings()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf logs every handled event at INFO: one line per child status change at a thousand models.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    start_http_server(settings.metrics_port, addr=settings.listen_address)
    if settings.wake_timeout_host:
        wake_timeout.serve(
            settings.listen_address, settings.wake_timeout_port, settings.wake_retry_after_seconds
        )
    # Peers of equal priority all pause; a random one lets exactly one copy work at a time. Sharded
    # replicas all work, each on the shards whose Leases it holds (sharding.py): kopf's peering is off.
    standalone = args.standalone or settings.shards > 0
    if settings.shards:
        logging.getLogger("infergate").info(
            "sharded into %d shards (Leases in %s); kopf's peering is off",
            settings.shards,
            settings.shard_namespace,
        )
    gate = PeeringGate(
        identity=own_identity(), priority=secrets.randbelow(1_000_000) + 1, standalone=standalone
    )
    handlers.configure(settings, gate)
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        liveness_endpoint=f"http://{settings.listen_address}:{settings.health_port}/healthz",
        standalone=standalone,
        # A peering name makes kopf's peering mandatory, and a standalone kopf then never finds its
        # peering CRD (it does not look): every watch stayed paused ("peering CRD is missing").
        peering_name=None if standalone else handlers.PEERING_NAME,
        priority=gate.priority,
        identity=gate.identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
    )


if __name__ == "__main__":
    main()
