"""The server's listening socket, bound before the server's heavy imports.

The kubelet probes a new container about once a second (startupProbe) and gets "connection refused" until
the process listens; a refused probe counts only at the next tick. Bound and listening first, the socket
queues a probe's connection in its backlog while uvicorn, numpy and the runtime import (~0.5 s here, more on
a loaded node), and the probe is answered as soon as the server runs: Ready up to a whole probe period
sooner. Nothing routes traffic to a pod before it is Ready, so only probes wait there.

This module imports nothing heavy: it is meant to run before everything else.
"""

from __future__ import annotations

import socket

BACKLOG = 2048  # uvicorn's default


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, the way uvicorn binds one (IPv6 when the host has a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
