"""An open-loop HTTP load generator (requests are sent on schedule whether or not earlier ones answered).

    python bench/openloop.py URL BODY_FILE RATE DURATION_S [MAX_CONNECTIONS]

Prints one JSON line: sent, per-status counts, client-side drops (no free connection), p50/p99 latency
measured from each request's scheduled time. wrk is closed-loop, hence this helper.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlparse


async def run(url: str, body: bytes, rate: float, duration: float, max_conns: int) -> dict[str, object]:
    u = urlparse(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    head = (
        f"POST {u.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    request = head + body
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    open_conns = 0
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, scheduled: float) -> None:
        nonlocal open_conns
        try:
            if conn is None:
                conn = await asyncio.open_connection(host, port)
            reader, writer = conn
            writer.write(request)
            header = await reader.readuntil(b"\r\n\r\n")
            status = header.split(b" ", 2)[1].decode()
            length = 0
            for line in header.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            statuses[status] += 1
            latencies.append(time.perf_counter() - scheduled)
            if b"connection: close" in header.lower():
                raise ConnectionError
            idle.append(conn)
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            statuses["conn_error"] += 1
            open_conns -= 1

    start = time.perf_counter()
    sent = dropped = 0
    while True:
        now = time.perf_counter()
        if now - start >= duration:
            break
        due = int((now - start) * rate)
        while sent < due:
            scheduled = start + sent / rate
            sent += 1
            if idle:
                conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = idle.pop()
            elif open_conns < max_conns:
                open_conns += 1
                conn = None
            else:
                dropped += 1
                continue
            t = asyncio.create_task(one(conn, scheduled))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        await asyncio.sleep(0.0005)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3 if latencies else float("nan")
        )

    return {
        "sent": sent,
        "duration_s": elapsed,
        "status": dict(statuses),
        "client_dropped": dropped,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    }


def main() -> None:
    url, body_file, rate, duration = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    max_conns = int(sys.argv[5]) if len(sys.argv) > 5 else 512
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with open(body_file, "rb") as f:
        body = f.read()
    print(json.dumps(asyncio.run(run(url, body, rate, duration, max_conns))))


if __name__ == "__main__":
    main()
