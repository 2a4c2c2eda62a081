#!/usr/bin/env bash
# `make demo`: the CSMS, a virtual garage against it and the monitor, on one SQLite file.
# The CSMS and the virtual chargers run the same accelerated clock (same speed and start),
# so departures and meter timestamps agree. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
SPEED="${SPEED:-60}"
SCENARIO="${SCENARIO:-garage-20}"
PORT="${PORT:-9000}"
MONITOR_PORT="${MONITOR_PORT:-8501}"
API_PORT="${API_PORT:-8080}"
# Firmware downloads and diagnostics uploads (csms serve --files-port, loopback only).
FILES_PORT="${FILES_PORT:-9001}"
CLOCK_START="${CLOCK_START:-$(date -u +%Y-%m-%dT%H:%M:%S+00:00)}"
export GARAGEGRID_DATABASE_URL="${GARAGEGRID_DATABASE_URL:-sqlite+aiosqlite:///garagegrid.db}"

pids=()
cleanup() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
}
trap cleanup INT TERM EXIT

$BIN/csms db upgrade
# The scenario's stations (real max current, phases and wiring) and residents' tags; a
# charger that is not in it still gets in through --auto-register.
# Every station has a key (a station without one is refused): the virtual chargers send it.
STATION_KEY="${STATION_KEY:-garagegrid-demo-station-key}"
$BIN/csms provision --scenario "$SCENARIO" --site --password "$STATION_KEY"
# The monitor's demo accounts: a manager, a viewer and two residents bound to demo stations
# and their tags (garage-20: CP03 and CP06, whose cars arrive first); new passwords on every run.
DEMO_RESIDENTS="${DEMO_RESIDENTS:---resident CP03:TAG03 --resident CP06:TAG06}"
# shellcheck disable=SC2086
accounts="$($BIN/python -m csms.store.seed --accounts-only $DEMO_RESIDENTS)"
# A firmware file for `csms firmware update CP01 --file vc-1.1.0.bin` (its first line is
# the version the virtual charger reports after the update).
mkdir -p garagegrid-files/firmware
printf '1.1.0\nGarageGrid virtual wallbox firmware\n' > garagegrid-files/firmware/vc-1.1.0.bin
# The virtual residents send their departures and needs through the operator API, as a
# resident app would: one resident account bound to every station of the scenario, and a
# token acting for it (made anew on every run; the old account and its tokens go first).
$BIN/csms user remove virtual-residents >/dev/null 2>&1 || true
stations="$($BIN/csms station list --json | $BIN/python -c \
    'import json, sys; print(" ".join("--station " + s["id"] for s in json.load(sys.stdin)))')"
# shellcheck disable=SC2086
$BIN/csms user add virtual-residents --role resident $stations </dev/null >/dev/null
GARAGEGRID_API_TOKEN="$($BIN/csms token add virtual-residents --role resident \
    --user virtual-residents 2>/dev/null)"
export GARAGEGRID_API_TOKEN
$BIN/csms serve --auto-register --port "$PORT" --speed "$SPEED" --clock-start "$CLOCK_START" \
    --api-port "$API_PORT" --api-host 127.0.0.1 --files-port "$FILES_PORT" 2>> csms.log &
pids+=($!)
$BIN/streamlit run monitor_app.py --server.headless true --server.port "$MONITOR_PORT" \
    --browser.gatherUsageStats false > monitor.log 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
echo "CSMS:    ws://127.0.0.1:$PORT/ocpp/<id>   (log: csms.log)"
echo "Monitor: http://localhost:$MONITOR_PORT    (log: monitor.log)"
echo "API:     http://127.0.0.1:$API_PORT/api/v1/openapi.json   metrics: http://127.0.0.1:$API_PORT/metrics"
echo "         (a token: csms token add NAME --role manager|viewer|resident [--user NAME])"
echo "Files:   http://127.0.0.1:$FILES_PORT   (export GARAGEGRID_FILES_URL=http://127.0.0.1:$FILES_PORT)"
echo "$accounts"
$BIN/virtual-chargers run --csms-url "ws://127.0.0.1:$PORT/ocpp" --scenario "$SCENARIO" \
    --speed "$SPEED" --clock-start "$CLOCK_START" --password "$STATION_KEY" --log-level WARNING \
    --residents --api-url "http://127.0.0.1:$API_PORT/api/v1" &
pids+=($!)
wait -n "${pids[@]}"
