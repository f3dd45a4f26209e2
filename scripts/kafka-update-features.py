#!/usr/bin/env python3
"""Sets cluster features on a Kafka-compatible broker with the UpdateFeatures request (API key 57, version 1).

scripts/services uses it once per fresh crabka-broker data dir to set `transaction.version=1`: without it that
broker bumps the producer epoch after every commit, and librdkafka's second transaction fails as fenced.
No Kafka client library speaks UpdateFeatures, so this writes the request by hand (standard library only).

Usage: kafka-update-features.py --bootstrap 127.0.0.1:19092 --feature transaction.version=1 [--feature ...]
Exit 0 when the broker accepted every update; 1 with the broker's error otherwise; 2 when it cannot connect.
"""
import argparse
import socket
import struct
import sys

API_KEY_UPDATE_FEATURES = 57
API_VERSION = 1  # flexible version: compact strings and arrays, tagged fields
# UpgradeType: 1 = upgrade, 2 = safe downgrade, 3 = unsafe downgrade. A fresh crabka-broker finalizes
# transaction.version at 2, so setting 1 is a downgrade: each update tries an upgrade first, then the downgrades.
UPGRADE_TYPES = (1, 2, 3)


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def compact_string(s: str) -> bytes:
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


def request(correlation_id: int, features: dict, upgrade_type: int, timeout_ms: int = 30000) -> bytes:
    # Request header v2: api_key, api_version, correlation_id, client_id (nullable string, int16 length), tags.
    client_id = b"outboxd-services"
    header = struct.pack(">hhi", API_KEY_UPDATE_FEATURES, API_VERSION, correlation_id)
    header += struct.pack(">h", len(client_id)) + client_id + uvarint(0)
    body = struct.pack(">i", timeout_ms)
    body += uvarint(len(features) + 1)
    for name, level in features.items():
        body += compact_string(name) + struct.pack(">hb", level, upgrade_type) + uvarint(0)
    body += struct.pack(">?", False)  # validate_only
    body += uvarint(0)
    msg = header + body
    return struct.pack(">i", len(msg)) + msg


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated UpdateFeatures response")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def int16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def nullable_compact_string(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode(errors="replace")

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True, help="host:port of the broker")
    ap.add_argument("--feature", action="append", required=True, help="NAME=LEVEL, repeatable")
    args = ap.parse_args()
    features = {}
    for f in args.feature:
        name, _, level = f.partition("=")
        features[name] = int(level)
    failures = []
    for upgrade_type in UPGRADE_TYPES:
        try:
            failures = update(args.bootstrap, features, upgrade_type)
        except OSError as e:
            print(f"cannot talk to {args.bootstrap}: {e}", file=sys.stderr)
            return 2
        if not failures:
            print("UpdateFeatures accepted: " + ", ".join(f"{k}={v}" for k, v in features.items())
                  + f" (upgrade type {upgrade_type})")
            return 0
    print("UpdateFeatures refused: " + "; ".join(failures), file=sys.stderr)
    return 1


def update(bootstrap: str, features: dict, upgrade_type: int) -> list:
    """Sends one UpdateFeatures request; returns the broker's complaints (empty when it accepted)."""
    host, _, port = bootstrap.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request(1, features, upgrade_type))
        size = struct.unpack(">i", recv_exact(sock, 4))[0]
        r = Reader(recv_exact(sock, size))
    # Response header v1: correlation_id, tags. Body: throttle_time_ms, error_code, error_message, results.
    r.int32()
    r.skip_tags()
    r.int32()
    code, message = r.int16(), r.nullable_compact_string()
    failures = [] if code == 0 else [f"error_code={code} {message or ''}".strip()]
    if code == 0 and r.pos < len(r.data):
        for _ in range(max(r.uvarint() - 1, 0)):
            feature = r.nullable_compact_string()
            fcode, fmsg = r.int16(), r.nullable_compact_string()
            r.skip_tags()
            if fcode != 0:
                failures.append(f"{feature}: error_code={fcode} {fmsg or ''}".strip())
    return failures

if __name__ == "__main__":
    sys.exit(main())
