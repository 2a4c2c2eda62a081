"""Firmware Management (OCPP 1.6 sections 5.8, 5.16, 4.4, 4.5; issue 13 item 4).

The HTTP file endpoint of `csms serve --files-port` (real requests on 127.0.0.1), then
the 1.6 test cases' CSMS side against a virtual charger: UpdateFirmware from the CLI ->
Downloading, Downloaded, Installing, a reboot with the new version, Installed, each
FirmwareStatusNotification recorded; a download that fails -> DownloadFailed; GetDiagnostics
-> the file uploaded with HTTP PUT and stored, Uploading and Uploaded recorded; an upload
that cannot reach its location -> UploadFailed.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from pathlib import Path

import pytest

from csms.cli import main
from csms.files import FileEndpoint, safe_name
from tests.profiles_support import Garage, eventually, garage, wait_command


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("fw-1.1.0.bin", True),
        ("a", True),
        ("..", False),
        ("../x", False),
        (".hidden", False),
        ("a b", False),
        ("x" * 129, False),
    ],
)
def test_file_names_are_one_harmless_segment(name: str, ok: bool) -> None:
    assert (safe_name(name) is not None) is ok


async def test_the_file_endpoint_serves_firmware_and_stores_uploads(tmp_path: Path) -> None:
    files = FileEndpoint(tmp_path)
    files.start()
    try:
        (tmp_path / "firmware" / "fw.bin").write_bytes(b"1.1.0\n")
        port = files.port
        assert await asyncio.to_thread(request, port, "GET", "/firmware/fw.bin") == (
            200,
            b"1.1.0\n",
        )
        status, _ = await asyncio.to_thread(request, port, "GET", "/firmware/none.bin")
        assert status == 404
        status, _ = await asyncio.to_thread(request, port, "GET", "/firmware/..%2Fsecret")
        assert status == 404
        status, _ = await asyncio.to_thread(
            request, port, "PUT", "/diagnostics/CP1/log.txt", b"hello", {"Content-Length": "5"}
        )
        assert status == 201
        assert (tmp_path / "diagnostics" / "CP1" / "log.txt").read_bytes() == b"hello"
        # A multipart/form-data POST (how many chargers upload): its file part is stored.
        boundary = "XyZ"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\nfrom a form\r\n--{boundary}--\r\n"
        ).encode()
        status, _ = await asyncio.to_thread(
            request,
            port,
            "POST",
            "/diagnostics/CP1/d.txt",
            body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert status == 201
        assert (tmp_path / "diagnostics" / "CP1" / "d.txt").read_bytes() == b"from a form"
        status, _ = await asyncio.to_thread(request, port, "PUT", "/diagnostics/../x", b"", {})
        assert status == 404
        status, _ = await asyncio.to_thread(request, port, "PUT", "/elsewhere/CP1/x", b"", {})
        assert status == 404
    finally:
        files.stop()


def cli(*argv: str) -> int:
    return main(list(argv))


async def statuses(g: Garage, kind: str) -> list[str]:
    events = await g.features.maintenance_events("CP1", limit=100)
    return [e["status"] for e in reversed(events) if e["kind"] == kind]


async def test_a_firmware_update_downloads_installs_reboots_and_reports_installed(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files_dir = tmp_path / "files"
    (files_dir / "firmware").mkdir(parents=True)
    (files_dir / "firmware" / "vc-1.1.0.bin").write_text("1.1.0\nvirtual firmware image\n")
    async with garage(db_url, files_port=0, files_dir=str(files_dir)) as g:
        assert g.app.files is not None
        monkeypatch.setenv("GARAGEGRID_DATABASE_URL", db_url)
        monkeypatch.setenv("GARAGEGRID_FILES_URL", g.app.files.base_url)
        before = await g.app.repository.get_charge_point("CP1")
        assert before is not None and before.firmware_version == "1.0.0"
        code = await asyncio.to_thread(cli, "firmware", "update", "CP1", "--file", "vc-1.1.0.bin")
        assert code == 0
        assert '"status": "done"' in capsys.readouterr().out

        async def installed() -> bool:
            return (await statuses(g, "firmware"))[-1:] == ["Installed"]

        await eventually(installed, "Installed reported")
        assert await statuses(g, "firmware") == [
            "Downloading",
            "Downloaded",
            "Installing",
            "Installed",
        ]
        after = await g.app.repository.get_charge_point("CP1")
        # It booted again with the new firmware, and its status is the latest one.
        assert after is not None and after.firmware_version == "1.1.0"
        assert g.station.stats.connects == 2
        assert await asyncio.to_thread(cli, "firmware", "status", "CP1") == 0
        shown = capsys.readouterr().out
        assert "firmware 1.1.0" in shown and "Installed" in shown


async def test_a_firmware_that_cannot_be_downloaded_is_reported_failed(db_url: str) -> None:
    async with garage(db_url, files_port=0) as g:
        assert g.app.files is not None
        command_id = await g.app.repository.enqueue_command(
            "CP1",
            "UpdateFirmware",
            {
                "location": f"{g.app.files.base_url}/firmware/missing.bin",
                "retrieveDate": "2026-01-05T16:00:00Z",
                "retries": 2,
                "retryInterval": 10,
            },
        )
        row = await wait_command(g.app, command_id)
        assert row["status"] == "done" and row["response"] == {}

        async def failed() -> bool:
            return (await statuses(g, "firmware"))[-1:] == ["DownloadFailed"]

        await eventually(failed, "DownloadFailed")
        # Two attempts (retries 2), then the failure; nothing installed.
        assert await statuses(g, "firmware") == ["Downloading", "Downloading", "DownloadFailed"]
        assert g.station.firmware_version == "1.0.0"


async def test_diagnostics_are_uploaded_to_the_csms(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files_dir = tmp_path / "files"
    async with garage(db_url, files_port=0, files_dir=str(files_dir)) as g:
        assert g.app.files is not None
        monkeypatch.setenv("GARAGEGRID_DATABASE_URL", db_url)
        code = await asyncio.to_thread(
            cli, "diagnostics", "get", "CP1", "--files-url", g.app.files.base_url
        )
        assert code == 0
        answer = json.loads(capsys.readouterr().out.splitlines()[-1])
        name = answer["response"]["fileName"]

        async def uploaded() -> bool:
            return (await statuses(g, "diagnostics"))[-1:] == ["Uploaded"]

        await eventually(uploaded, "Uploaded")
        assert await statuses(g, "diagnostics") == ["Uploading", "Uploaded"]
        stored = json.loads((files_dir / "diagnostics" / "CP1" / name).read_text())
        assert stored["chargePointId"] == "CP1"
        assert "AuthorizationKey" not in stored["configuration"]  # write-only, never out
        station = await g.app.repository.get_charge_point("CP1")
        assert station is not None


async def test_an_upload_that_cannot_reach_its_location_is_reported_failed(db_url: str) -> None:
    async with garage(db_url) as g:
        command_id = await g.app.repository.enqueue_command(
            "CP1", "GetDiagnostics", {"location": "ftp://127.0.0.1/diagnostics/"}
        )
        row = await wait_command(g.app, command_id)
        assert row["status"] == "done"

        async def failed() -> bool:
            return (await statuses(g, "diagnostics"))[-1:] == ["UploadFailed"]

        await eventually(failed, "UploadFailed")
