#!/usr/bin/python3
"""Probe application: the stand-in for the api, web and worker images in the engine tests.

It reads exactly the environment the program gives a container (DATABASE_URL, REDIS_URL or
CELERY_BROKER_URL, MQTT_* with PEM contents, VAULT_PATH or CLIPPY_INSTANCE_PATH) and nothing else.

    probe serve PORT        HTTP on 0.0.0.0:PORT: /api/health (200 only if db and redis answer),
                            / (the environment's name), /probe (JSON: what this container reaches)
    probe worker QUEUES     consume the comma-separated Redis lists QUEUES (as celery -Q would)
    probe migrate           apply /opt/probe/migrations.sql to DATABASE_URL once (alembic/flask db),
                            {prefix} in it replaced by TABLE_PREFIX;
                            its first line "-- marker: TABLE" names the table that shows it ran
    probe report            print the JSON of /probe
    probe reach HOST PORT   exit 0 if a TCP connection to HOST:PORT opens within 3 s, else 1

The wrappers gunicorn, celery, alembic and flask translate the stacks' commands into these.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import tempfile
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MIGRATIONS = Path("/opt/probe/migrations.sql")


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip()[:300]


def check_database() -> dict[str, Any]:
    import psycopg2

    url = os.environ.get("DATABASE_URL")
    if not url:
        return {"ok": False, "error": "DATABASE_URL not set"}
    try:
        with psycopg2.connect(url, connect_timeout=3) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT current_user, current_database(), inet_server_addr()::text")
            user, database, address = cursor.fetchone()
        conn.close()
        return {"ok": True, "user": user, "database": database, "server": address}
    except Exception as error:
        return {"ok": False, "error": _error(error)}


def redis_url() -> str | None:
    return os.environ.get("REDIS_URL") or os.environ.get("CELERY_BROKER_URL")


def check_redis() -> dict[str, Any]:
    import redis

    url = redis_url()
    if not url:
        return {"ok": False, "error": "REDIS_URL not set"}
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.set(f"probe:{socket.gethostname()}", str(time.time()))
        return {"ok": True, "db": client.connection_pool.connection_kwargs.get("db", 0)}
    except Exception as error:
        return {"ok": False, "error": _error(error)}


def _pem_file(directory: str, name: str, variable: str) -> str:
    path = Path(directory, name)
    path.write_text(os.environ[variable])
    return str(path)


def check_mqtt() -> dict[str, Any] | None:
    """Publish once to <prefix>/probe over mTLS with this environment's client certificate."""
    host = os.environ.get("MQTT_HOST")
    if not host:
        return None
    import paho.mqtt.client as mqtt

    result: dict[str, Any] = {"ok": False}
    try:
        with tempfile.TemporaryDirectory() as pem:
            client = mqtt.Client(client_id=f"probe-{socket.gethostname()}")
            if os.environ.get("MQTT_TLS_ENABLED", "").lower() == "true":
                client.tls_set(
                    ca_certs=_pem_file(pem, "ca.crt", "MQTT_CA_CERT"),
                    certfile=_pem_file(pem, "client.crt", "MQTT_CLIENT_CERT"),
                    keyfile=_pem_file(pem, "client.key", "MQTT_CLIENT_KEY"),
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            client.connect(host, int(os.environ.get("MQTT_PORT", "1883")), keepalive=10)
            topic = f"{os.environ.get('MQTT_TOPIC_PREFIX', 'probe')}/probe"
            client.loop_start()
            info = client.publish(topic, socket.gethostname(), qos=1)
            info.wait_for_publish(timeout=5)
            client.loop_stop()
            client.disconnect()
            result = {"ok": bool(info.is_published()), "topic": topic}
    except Exception as error:
        result = {"ok": False, "error": _error(error)}
    return result


def vault_dir() -> str | None:
    return os.environ.get("VAULT_PATH") or os.environ.get("CLIPPY_INSTANCE_PATH")


def check_vault() -> dict[str, Any]:
    directory = vault_dir()
    if not directory:
        return {"ok": False, "error": "VAULT_PATH not set"}
    try:
        path = Path(directory, f"probe-{socket.gethostname()}.txt")
        path.write_text(os.environ.get("ENVIRONMENT", "") + "\n")
        return {"ok": True, "file": str(path)}
    except Exception as error:
        return {"ok": False, "error": _error(error)}


def report() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "db": check_database(),
        "redis": check_redis(),
        "mqtt": check_mqtt(),
        "vault": check_vault(),
    }


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/health":
            reached = {"db": check_database(), "redis": check_redis()}
            healthy = all(part["ok"] for part in reached.values())
            body = {"served_by": "api", "hostname": socket.gethostname(), **reached}
            self._send(200 if healthy else 503, json.dumps(body))
        elif path == "/probe":
            self._send(200, json.dumps(report()))
        elif path.startswith("/api/"):
            self._send(200, json.dumps({"served_by": "api", "path": path}))
        else:
            self._send(200, f"<html>web {socket.gethostname()}</html>", "text/html")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(port: int) -> None:
    print(f"probe serving on :{port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


def worker(queues: list[str]) -> None:
    """Consume jobs from the queues; each job is answered on the list ``done:<job>``."""
    import redis

    url = redis_url()
    print(f"probe worker on {queues} of {url and urlsplit(url).hostname}", flush=True)
    while True:
        try:
            client = redis.Redis.from_url(url or "", socket_connect_timeout=3)
            popped = client.blpop(queues, timeout=5)
            if popped:
                queue, job = popped[0].decode(), popped[1].decode()
                client.rpush(f"done:{job}", json.dumps({"queue": queue, "worker": socket.gethostname()}))
        except Exception:
            traceback.print_exc()
            time.sleep(2)


def migrate() -> None:
    import psycopg2

    # TABLE_PREFIX (ClippyFront: opt_ / dev_): each environment migrates its own prefixed tables.
    prefix = os.environ.get("TABLE_PREFIX", "")
    with psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=5) as conn, conn.cursor() as cursor:
        script = MIGRATIONS.read_text().replace("{prefix}", prefix) if MIGRATIONS.exists() else ""
        # First line "-- marker: TABLE": the migrations ran once that table exists.
        marker = script.partition("\n")[0].removeprefix("-- marker:").strip() or "alembic_version"
        cursor.execute("SELECT to_regclass(%s)", (f"public.{marker}",))
        if cursor.fetchone()[0] is None and script:
            cursor.execute(script)
            print("migrated", flush=True)
        else:
            print("nothing to migrate", flush=True)


def reach(host: str, port: int) -> int:
    try:
        with socket.create_connection((host, port), timeout=3):
            print(f"reached {host}:{port}")
            return 0
    except OSError as error:
        print(f"cannot reach {host}:{port}: {error}")
        return 1


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "serve"
    if command == "serve":
        serve(int(argv[1]))
    elif command == "worker":
        worker(argv[1].split(","))
    elif command == "migrate":
        migrate()
    elif command == "report":
        print(json.dumps(report()))
    elif command == "reach":
        return reach(argv[1], int(argv[2]))
    else:
        print(f"probe: unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
