"""How fast is the operator API, and what do the metrics cost the OCPP path?

    .venv/bin/python scripts/bench_api.py [--stations 20] [--sessions 200] [--requests 200]

Starts the real CSMS with its API (as `csms serve --api-port`) on a fresh SQLite file in a
temp dir, registers ``--stations`` stations and ``--sessions`` finished and running
sessions with meter values, then times ``--requests`` sequential requests of each kind
from one HTTP client over loopback (median, p95, requests/s) and one /metrics scrape;
finally the cost of one metrics update on the OCPP path (a counter and a histogram), in
microseconds. Figures depend on the machine and its load: print them, do not assert them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from csms import metrics  # noqa: E402
from csms.app import CsmsApp, ServeConfig  # noqa: E402
from csms.auth import Role  # noqa: E402
from csms.clock import SimClock, utcnow  # noqa: E402
from csms.domain import SampledValue  # noqa: E402
from csms.logs import configure_logging  # noqa: E402
from csms.store.tokens import add_token  # noqa: E402

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


async def seed(app: CsmsApp, stations: int, sessions: int) -> list[int]:
    repo = app.repository
    for n in range(1, stations + 1):
        await repo.add_charge_point(f"CP{n:02d}", max_current_a=16, phases=3, password="k" * 20)
        await repo.add_id_tag(f"TAG{n:02d}")
    transactions = []
    for k in range(sessions):
        n = k % stations + 1
        start = T0 + timedelta(minutes=10 * k)
        started = await repo.start_transaction(f"CP{n:02d}", 1, f"TAG{n:02d}", 0, start)
        tx = started.transaction_id
        transactions.append(tx)
        samples = [
            SampledValue(
                start + timedelta(minutes=m),
                str(m * 180),
                "Energy.Active.Import.Register",
                unit="Wh",
            )
            for m in range(1, 31)
        ]
        await repo.add_meter_values(f"CP{n:02d}", 1, tx, samples)
        if k < sessions - stations:
            await repo.stop_transaction(
                f"CP{n:02d}", tx, 30 * 180, start + timedelta(minutes=30), reason="Local"
            )
    return transactions


async def timed(client: httpx.AsyncClient, n: int, request: object) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        response = await request(client)  # type: ignore[operator]
        out.append(time.perf_counter() - began)
        assert response.status_code < 300, response.text
    return out


def report(name: str, seconds: list[float]) -> None:
    ordered = sorted(seconds)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    print(
        f"{name:<44} median {statistics.median(ordered) * 1000:7.1f} ms   "
        f"p95 {p95 * 1000:7.1f} ms   {len(ordered) / sum(ordered):7.0f} req/s"
    )


async def main(args: argparse.Namespace) -> None:
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        config = ServeConfig(
            database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}",
            host="127.0.0.1",
            port=0,
            controller=False,
            api_port=0,
        )
        app = CsmsApp(config, clock=SimClock(speed=1.0, start=T0 + timedelta(days=3)))
        await app.start()
        try:
            transactions = await seed(app, args.stations, args.sessions)
            _info, token = await add_token(
                app.repository.sessionmaker, "bench", Role.manager, user=None, now=utcnow()
            )
            assert app.api is not None
            running = transactions[-1]
            later = (app.clock.now() + timedelta(hours=8)).isoformat()
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{app.api.port}",
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                print(
                    f"{args.stations} stations, {args.sessions} sessions (30 meter values "
                    f"each), {args.requests} sequential requests per line, one client, loopback"
                )
                report("GET /api/v1/me (token check only)", await timed(
                    client, args.requests, lambda c: c.get("/api/v1/me")
                ))  # fmt: skip
                report("GET /api/v1/stations", await timed(
                    client, args.requests, lambda c: c.get("/api/v1/stations")
                ))  # fmt: skip
                report(f"GET /api/v1/sessions (all {args.sessions})", await timed(
                    client, args.requests, lambda c: c.get("/api/v1/sessions")
                ))  # fmt: skip
                report("PATCH /api/v1/sessions/{id} (departure)", await timed(
                    client,
                    args.requests,
                    lambda c: c.patch(f"/api/v1/sessions/{running}", json={"departure_at": later}),
                ))  # fmt: skip
                report("GET .../meter-values?format=csv (30 rows)", await timed(
                    client,
                    args.requests,
                    lambda c: c.get(f"/api/v1/sessions/{running}/meter-values?format=csv"),
                ))  # fmt: skip
                report("GET /api/v1/live", await timed(
                    client, args.requests, lambda c: c.get("/api/v1/live")
                ))  # fmt: skip
                report("GET /metrics", await timed(
                    client, args.requests, lambda c: c.get("/metrics")
                ))  # fmt: skip
        finally:
            await app.stop()
    n = 200_000
    began = time.perf_counter()
    for _ in range(n):
        metrics.count_message("MeterValues", "in")
    counter_us = (time.perf_counter() - began) / n * 1e6
    began = time.perf_counter()
    for _ in range(n):
        metrics.observe_call("SetChargingProfile", 0.02)
    histogram_us = (time.perf_counter() - began) / n * 1e6
    print(
        f"metrics on the OCPP path: {counter_us:.2f} us per message counted, "
        f"{histogram_us:.2f} us per call latency observed"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
