"""The same store on a real PostgreSQL 15 server, started by the test in a temp directory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from csms.store import migrate
from csms.store.engine import create_engine
from csms.store.models import Base
from tests.conftest import start_app, ws_url
from tests.ocpp_client import RawChargePoint

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _run_as_postgres(*args: str) -> None:
    command = list(args)
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)


def new_database(server_url: str, prefix: str) -> str:
    """A new, empty database on the server of ``server_url`` (the module's); its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    host, port = server_url.split("@", 1)[1].split("/", 1)[0].split(":")
    _run_as_postgres(str(PG_BIN / "createdb"), "-h", host, "-p", port, "-U", "garagegrid", name)
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries are not installed on this machine")
    # Not under pytest's tmp dir: that one is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="garagegrid-pg-"))
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _run_as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "garagegrid")
    _run_as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(data / "log"),
        "-o",
        f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    try:
        _run_as_postgres(
            str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "garagegrid", "gg"
        )
        yield f"postgresql+asyncpg://garagegrid@127.0.0.1:{port}/gg"
    finally:
        _run_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(base, ignore_errors=True)


async def test_migrations_match_models_on_postgres(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
        assert diff == []
    finally:
        await engine.dispose()


async def test_whole_session_on_postgres(pg_url: str) -> None:
    app = await start_app(pg_url)
    try:
        await app.repository.add_charge_point("PG1", password="pg-password-123456")
        await app.repository.add_id_tag("PGTAG")
        cp = await RawChargePoint.connect(ws_url(app, "PG1"), password="pg-password-123456")
        await cp.ok("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        start = {
            "connectorId": 1,
            "idTag": "PGTAG",
            "meterStart": 10,
            "timestamp": "2026-01-05T16:00:00Z",
        }
        tx = (await cp.ok("StartTransaction", start))["transactionId"]
        assert (await cp.ok("StartTransaction", start, message_id="again"))["transactionId"] == tx
        await cp.ok(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [
                    {"timestamp": "2026-01-05T16:10:00Z", "sampledValue": [{"value": "500"}]}
                ],
            },
        )
        await cp.ok(
            "StopTransaction",
            {"transactionId": tx, "meterStop": 2010, "timestamp": "2026-01-05T17:00:00Z"},
        )
        await cp.ok(
            "StopTransaction",
            {"transactionId": -1, "meterStop": 1, "timestamp": "2026-01-05T17:00:00Z"},
        )
        await cp.close()
        rows = await app.repository.sessions_for_export()
        assert [(r["transaction_id"], r["energy_wh"]) for r in rows] == [(tx, 2000)]
    finally:
        await app.stop()
