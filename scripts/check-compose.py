#!/usr/bin/env python3
"""Checks docker-compose.yml without a Docker engine (none runs on the project's machines).

It parses the file and checks what `docker compose config` would reject, plus the settings outboxd depends on:
Postgres 16/17 with wal_level=logical, Kafka in KRaft mode with transactions usable on one broker, the registry
pointed at that Kafka, and an outboxd service built from a Dockerfile whose COPY sources exist.
Exit 0 when every check passes; 1 with one line per problem otherwise.
"""
import os

# Broker settings that docker-compose.yml must share with the local services: transactions on a single node
# and topic creation.
MATCHING_BROKER_SETTINGS = (
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "default.replication.factor",
    "min.insync.replicas",
    "auto.create.topics.enable",
    "group.initial.rebalance.delay.ms",
)
import re
import sys

import yaml


def check(path: str) -> list:
    root = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        doc = yaml.safe_load(f)
    problems = []
    services = doc.get("services") or {}
    for name in ("postgres", "kafka", "schema-registry", "outboxd"):
        if name not in services:
            problems.append(f"missing service {name!r}")
    if problems:
        return problems

    for name, svc in services.items():
        if not isinstance(svc, dict) or not ("image" in svc or "build" in svc):
            problems.append(f"{name}: needs an image or a build")
            continue
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep!r}")
        for vol in svc.get("volumes") or []:
            src = vol.split(":")[0]
            if src.startswith("."):
                if not os.path.exists(os.path.join(root, src)):
                    problems.append(f"{name}: volume source {src} does not exist")
            elif src not in (doc.get("volumes") or {}):
                problems.append(f"{name}: named volume {src!r} not declared under volumes:")

    host_ports = [p.split(":")[0] for s in services.values() for p in (s.get("ports") or [])]
    if len(host_ports) != len(set(host_ports)):
        problems.append(f"host ports used twice: {host_ports}")

    pg = services["postgres"]
    m = re.match(r"postgres:(\d+)", pg.get("image", ""))
    if not m or m.group(1) not in ("16", "17"):
        problems.append("postgres: image must be postgres:16 or postgres:17")
    if "wal_level=logical" not in " ".join(map(str, pg.get("command") or [])):
        problems.append("postgres: command must set wal_level=logical")

    kenv = services["kafka"].get("environment") or {}
    if "controller" not in str(kenv.get("KAFKA_PROCESS_ROLES", "")):
        problems.append("kafka: KAFKA_PROCESS_ROLES must include controller (KRaft mode)")
    image = str(services["kafka"].get("image", ""))
    if not image.startswith("apache/kafka:4.4"):
        problems.append(f"kafka: image must be apache/kafka:4.4.x (the version the local services run), not {image!r}")
    # The settings of the local broker that matter to outboxd (transactions on one node, topic creation) must
    # be the same here: they are read from tools/kafka/server.properties.
    local = {}
    with open(os.path.join(root, "tools/kafka/server.properties")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                local[k.strip()] = v.strip()
    for prop in MATCHING_BROKER_SETTINGS:
        key = "KAFKA_" + prop.upper().replace(".", "_")
        if prop not in local:
            problems.append(f"tools/kafka/server.properties: {prop} is missing")
        elif str(kenv.get(key)).lower() != local[prop].lower():
            problems.append(f"kafka: {key} must be {local[prop]!r} as in tools/kafka/server.properties, "
                            f"got {kenv.get(key)!r}")
    for key in ("KAFKA_NODE_ID", "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS",
                "KAFKA_CONTROLLER_LISTENER_NAMES"):
        if key not in kenv:
            problems.append(f"kafka: {key} is required in KRaft mode")

    renv = services["schema-registry"].get("environment") or {}
    if "kafka:9092" not in str(renv.get("SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "")):
        problems.append("schema-registry: SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS must point at kafka:9092")

    build = services["outboxd"].get("build") or {}
    dockerfile = os.path.join(root, build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    if not os.path.exists(dockerfile):
        problems.append(f"outboxd: {dockerfile} does not exist")
    else:
        with open(dockerfile) as f:
            for line in f:
                parts = line.split()
                if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
                    for src in parts[1:-1]:
                        if not os.path.exists(os.path.join(root, src)):
                            problems.append(f"Dockerfile: COPY source {src} does not exist")
    return problems


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "docker-compose.yml"
    problems = check(path)
    for p in problems:
        print(f"{path}: {p}", file=sys.stderr)
    if not problems:
        print(f"{path}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
