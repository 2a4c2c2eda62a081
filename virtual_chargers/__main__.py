"""``virtual-chargers``: a garage of virtual OCPP 1.6J charge points against a CSMS.

    virtual-chargers run --csms-url ws://127.0.0.1:9000/ocpp --scenario garage-20 --speed 100
    virtual-chargers run --csms-url ws://127.0.0.1:9000/ocpp --count 50 --seed 7 --quiet

Ctrl-C or SIGTERM stops cleanly: running transactions stop with reason Local, the queue is
delivered if the central system is reachable, the connections close.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from csms.errors import ConfigError
from csms.logs import configure_logging
from csms.scenario import BUILTIN_SCENARIOS, Scenario, load_scenario, make_garage_scenario
from virtual_chargers.display import LiveTable, format_report
from virtual_chargers.fleet import Fleet, FleetClock, FleetOptions
from virtual_chargers.options import QUIRK_NAMES, Quirks, StationOptions
from virtual_chargers.residents import Residents

log = logging.getLogger("virtual_chargers")

API_URL_ENV = "GARAGEGRID_API_URL"
API_TOKEN_ENV = "GARAGEGRID_API_TOKEN"  # noqa: S105 - the variable's name, not a token


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {text!r}")
    return value


def _datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected ISO 8601 like 2026-01-05T16:00:00+02:00, got {text!r}"
        ) from None
    if value.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"the time needs a UTC offset (e.g. +02:00), got {text!r}")
    return value


def _url(text: str) -> str:
    if not text.startswith(("ws://", "wss://")):
        raise argparse.ArgumentTypeError(f"expected a ws:// or wss:// URL, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="virtual-chargers",
        description="Virtual OCPP 1.6J charge points with simulated EVs, against a CSMS.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run a scenario's stations and sessions",
        description="Start one OCPP 1.6J client per station and play the sessions.",
    )
    run.add_argument(
        "--csms-url",
        type=_url,
        required=True,
        help="base URL; each station connects to URL/<station id>",
    )
    what = run.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--scenario",
        help=f"built-in ({', '.join(BUILTIN_SCENARIOS)}), a real-data scenario, or a JSON file",
    )
    what.add_argument(
        "--count", type=_positive_int, help="N stations with random realistic sessions"
    )
    run.add_argument("--seed", type=int, default=1, help="random seed for --count (default 1)")
    run.add_argument(
        "--speed", type=_positive_float, default=1.0, help="simulated seconds per real second"
    )
    run.add_argument(
        "--duration",
        type=_positive_float,
        help="stop after this many simulated seconds (default: when the last car has left)",
    )
    run.add_argument(
        "--clock-start",
        type=_datetime,
        help="simulated start time, ISO 8601 (default: the scenario's start, else now); "
        "the stations then take the CSMS's time from BootNotification",
    )
    run.add_argument("--password", help="AuthorizationKey for HTTP Basic auth (every station)")
    run.add_argument(
        "--meter-interval",
        type=_positive_int,
        default=60,
        help="MeterValueSampleInterval in simulated seconds (default 60)",
    )
    run.add_argument(
        "--quirk",
        action="append",
        default=[],
        metavar="[STATION:]QUIRKS",
        help=f"charger quirks, comma-separated: {', '.join(QUIRK_NAMES)}; prefix "
        "'CP01:' for one station, none for all (repeatable)",
    )
    run.add_argument(
        "--free-vend",
        action="store_true",
        help="start without Authorize and keep charging when the id tag is not accepted",
    )
    run.add_argument("--state-dir", type=Path, help="keep each station's flash in DIR/<id>.json")
    run.add_argument(
        "--validate",
        action="store_true",
        help="check every outgoing message against the OCPP 1.6 schemas (slower)",
    )
    run.add_argument("--quiet", action="store_true", help="no live table")
    run.add_argument(
        "--residents",
        action="store_true",
        help="residents tell the CSMS their departure and energy need through its operator "
        "API (--api-url, and a token in $GARAGEGRID_API_TOKEN or --api-token)",
    )
    run.add_argument(
        "--api-url",
        default=os.environ.get(API_URL_ENV),
        help=f"the CSMS's API, e.g. http://127.0.0.1:8080/api/v1 (default ${API_URL_ENV})",
    )
    run.add_argument(
        "--api-token",
        default=os.environ.get(API_TOKEN_ENV),
        help=f"bearer token for --residents (default ${API_TOKEN_ENV}; the variable keeps it "
        "out of the process list): csms token add NAME --role resident --user ACCOUNT",
    )
    run.add_argument(
        "--log-level",
        help="DEBUG, INFO, WARNING (default INFO; WARNING while the live table is shown)",
    )
    return parser


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.count is not None:
        return make_garage_scenario(args.count, seed=args.seed)
    return load_scenario(args.scenario)


def _residents(args: argparse.Namespace) -> Residents | None:
    if not args.residents:
        return None
    if not args.api_url or not args.api_token:
        raise ConfigError(
            f"--residents talks to the CSMS's API: give --api-url (or ${API_URL_ENV}) and a "
            f"token in ${API_TOKEN_ENV} (or --api-token); csms token add makes one"
        )
    return Residents(args.api_url, args.api_token)


def _quirks(specs: Sequence[str], scenario: Scenario) -> dict[str, Quirks]:
    ids = {s.id for s in scenario.stations}
    out: dict[str, Quirks] = {}
    for spec in specs:
        station, sep, names = spec.partition(":")
        if not sep:
            station, names = "*", spec
        if station != "*" and station not in ids:
            raise ConfigError(f"--quirk {spec!r}: no station {station!r} in the scenario")
        try:
            out[station] = Quirks.parse(names)
        except ValueError as exc:
            raise ConfigError(f"--quirk {spec!r}: {exc}") from None
    return out


async def _run(args: argparse.Namespace, scenario: Scenario, show_table: bool) -> int:
    start = args.clock_start or scenario.start or datetime.now(UTC)
    display_tz: tzinfo | None = start.tzinfo
    clock = FleetClock(args.speed, start)
    residents = _residents(args)
    options = FleetOptions(
        station=StationOptions(
            on_transaction_started=residents.on_transaction_started if residents else None,
            password=args.password,
            free_vend=args.free_vend,
            config={"MeterValueSampleInterval": str(args.meter_interval)},
            validate_messages=args.validate,
        ),
        quirks=_quirks(args.quirk, scenario),
        duration_s=args.duration,
        state_dir=args.state_dir,
    )
    if args.state_dir is not None:
        args.state_dir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(scenario, args.csms_url, clock, options)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.warning("stopping: transactions end with reason Local (again to abort)")
            fleet.stop()
        elif main_task is not None:
            main_task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    table = asyncio.create_task(LiveTable(fleet, tz=display_tz).run()) if show_table else None
    try:
        report = await fleet.run()
    finally:
        if table is not None:
            table.cancel()
            await asyncio.gather(table, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if residents is not None:
        await residents.close()
    print(format_report(report), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    show_table = not args.quiet and sys.stdout.isatty()
    configure_logging(args.log_level or ("WARNING" if show_table else "INFO"))
    try:
        scenario = _scenario(args)
        return asyncio.run(_run(args, scenario, show_table))
    except ConfigError as exc:
        print(f"virtual-chargers: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130


if __name__ == "__main__":
    sys.exit(main())
