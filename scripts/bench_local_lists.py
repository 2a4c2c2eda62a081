"""How fast `csms serve` brings id tag changes to the chargers' local lists (issue 13).

Starts the real CSMS on 127.0.0.1 (a fresh SQLite store in a temporary directory, the
local list sync at its default 2 s poll) and N virtual chargers, adds T id tags, and
prints, in real seconds: until every charger holds the whole list (GetLocalListVersion,
then a Full SendLocalList of T entries), then until one blocked tag has reached every
charger (a Differential each), the process's CPU time meanwhile, and its CPU time over
10 s in which nothing changes (chargers idle, the sync only checking).

    .venv/bin/python scripts/bench_local_lists.py [--chargers 20] [--tags 500]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from csms.app import CsmsApp, ServeConfig
from csms.clock import SimClock
from virtual_chargers.options import StationOptions
from virtual_chargers.simulation import Electrics
from virtual_chargers.station import VirtualStation

IDLE_S = 10.0


async def until(predicate: object, timeout_s: float = 120.0) -> float:
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - started > timeout_s:
            raise SystemExit("timed out")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def main(chargers: int, tags: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        clock = SimClock(speed=1.0)
        app = CsmsApp(
            ServeConfig(database_url=url, host="127.0.0.1", port=0, controller=False),
            clock=clock,
        )
        await app.start()
        stations = []
        tasks = []
        try:
            for n in range(chargers):
                cp_id = f"CP{n:03d}"
                await app.repository.add_charge_point(cp_id, password="0123456789abcdef")
                station = VirtualStation(
                    cp_id,
                    f"ws://127.0.0.1:{app.port}/ocpp",
                    Electrics(16.0, 3),
                    clock,
                    StationOptions(password="0123456789abcdef"),
                )
                stations.append(station)
                tasks.append(asyncio.create_task(station.run()))
            await until(lambda: all(s.online for s in stations))
            cpu0 = time.process_time()
            for t in range(tags):
                await app.repository.add_id_tag(f"TAG{t:05d}")
            full_s = await until(lambda: all(len(s.features.local_list) == tags for s in stations))
            await app.repository.set_id_tag_blocked("TAG00000")
            diff_s = await until(
                lambda: all(s.features.local_list["TAG00000"].status == "Blocked" for s in stations)
            )
            cpu = time.process_time() - cpu0
            # Nothing changes now: what the sync costs while it only checks.
            idle0 = time.process_time()
            await asyncio.sleep(IDLE_S)
            idle = time.process_time() - idle0
            print(f"chargers {chargers}, id tags {tags}, sync poll 2 s")
            print(f"  whole list on every charger after the tags were added: {full_s:.2f} s")
            print(f"  one blocked tag on every charger: {diff_s:.2f} s")
            print(f"  process CPU meanwhile (CSMS + chargers): {cpu:.2f} s")
            print(f"  process CPU over {IDLE_S:g} s with nothing to send: {idle:.2f} s")
        finally:
            for station in stations:
                await station.shutdown(flush_timeout_real_s=0.2)
            await asyncio.gather(*tasks, return_exceptions=True)
            await app.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chargers", type=int, default=20)
    parser.add_argument("--tags", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.chargers, args.tags))
