#!/usr/bin/env python3
"""Exits 0 once a Kafka broker answers a Metadata request naming at least one live broker and a controller.

An open port is not readiness: a KRaft node accepts connections before it has registered itself, and until
then clients get empty metadata. scripts/services and the tests' private brokers wait on this.

Usage: kafka-ready.py 127.0.0.1:19092 [--timeout-ms 2000]
"""
import socket
import struct
import sys


def metadata(host: str, port: int, timeout: float) -> tuple[int, int]:
    """(number of brokers, controller id) from a Metadata v4 request for no topics."""
    client_id = b"outboxd-ready"
    # Header v1: api_key 3 (Metadata), version 4, correlation id, client id. Body: topics = empty array
    # (not null: null asks for every topic), allow_auto_topic_creation = false.
    body = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id + struct.pack(">ib", 0, 0)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        resp = recv_exact(s, size)
    off = 4  # correlation id
    off += 4  # throttle_time_ms
    (n_brokers,) = struct.unpack_from(">i", resp, off)
    off += 4
    for _ in range(n_brokers):
        off += 4  # node id
        (hlen,) = struct.unpack_from(">h", resp, off)
        off += 2 + hlen + 4  # host, port
        (rlen,) = struct.unpack_from(">h", resp, off)
        off += 2 + max(rlen, 0)  # rack (nullable)
    (clen,) = struct.unpack_from(">h", resp, off)
    off += 2 + max(clen, 0)  # cluster id (nullable)
    (controller,) = struct.unpack_from(">i", resp, off)
    return n_brokers, controller


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return buf


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    host, _, port = sys.argv[1].rpartition(":")
    timeout = 2.0
    if "--timeout-ms" in sys.argv:
        timeout = int(sys.argv[sys.argv.index("--timeout-ms") + 1]) / 1000
    try:
        brokers, controller = metadata(host, int(port), timeout)
    except (OSError, struct.error) as e:
        print(f"kafka-ready: {sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    if brokers < 1 or controller < 0:
        print(f"kafka-ready: {sys.argv[1]}: {brokers} brokers, controller {controller}: not yet", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
