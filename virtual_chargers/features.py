"""The charger side of Local Auth List Management, Reservation and Firmware Management.

`StationFeatures` belongs to one `VirtualStation`; `CentralSystemCommands` hands it the
central system's calls, and the station asks it when a tag arrives or a status is due.

- Local Authorization List (OCPP 1.6 sections 3.4, 5.10, 5.15): kept in the station's
  flash with its version (the same `csms.local_list` arithmetic the CSMS predicts with).
  A Differential whose listVersion is not above ours is a VersionMismatch; an update
  longer than SendLocalListMaxLength, or a list longer than LocalAuthListMaxLength, is
  Failed; LocalAuthListEnabled false answers NotSupported and version -1.
- Reservation (sections 3.11, 5.13, 5.2): one reservation of connector 1 (connector 0 is
  Rejected: ReserveConnectorZeroSupported is false). Faulted, Unavailable or Occupied as
  the connector is; the connector reports Reserved; only its idTag (or a tag with its
  parentIdTag on the local list) may start, and the StartTransaction carries its
  reservationId; it lapses at its expiryDate on the station's clock.
- Firmware Management (sections 5.8, 5.16, 4.4, 4.5): UpdateFirmware downloads the file
  over HTTP at retrieveDate (Downloading, Downloaded / DownloadFailed after ``retries``),
  installs it once no transaction runs (Installing), reboots, and after the next
  accepted boot reports Installed; the firmware version is the file's first line.
  GetDiagnostics uploads a small text file with HTTP PUT to ``location`` + fileName
  (Uploading, Uploaded / UploadFailed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from csms.local_list import DISABLED_VERSION, ListEntry, ListUpdate, UpdateType, apply_update
from csms.profiles import ProfileError, parse_ocpp_datetime
from virtual_chargers import messages
from virtual_chargers.charging import CONNECTOR
from virtual_chargers.uplink import sleep_simulated

if TYPE_CHECKING:
    from virtual_chargers.station import VirtualStation

log = logging.getLogger("virtual_chargers.features")

# Simulated seconds an installation takes before the reboot.
INSTALL_S: Final = 30.0
# Real seconds an HTTP transfer may take.
TRANSFER_TIMEOUT_REAL_S: Final = 10.0
# firmwareVersion is a CiString50 (BootNotification.req).
MAX_FIRMWARE_VERSION: Final = 50


@dataclass(frozen=True)
class StationReservation:
    reservation_id: int
    id_tag: str
    parent_id_tag: str | None
    expires_at: datetime


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TRANSFER_TIMEOUT_REAL_S) as response:  # noqa: S310 - http(s) only, checked by the caller
        data: bytes = response.read()
        return data


def _http_put(url: str, body: bytes) -> None:
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked by the caller
        url, data=body, method="PUT", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=TRANSFER_TIMEOUT_REAL_S):  # noqa: S310
        pass


def _is_http(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


class StationFeatures:
    def __init__(self, station: VirtualStation) -> None:
        self._station = station
        self.local_list: dict[str, ListEntry] = {}
        self.list_version = 0
        self.reservation: StationReservation | None = None
        self.firmware_version = station.options.firmware_version
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"
        # Installed, to be told after the next accepted boot.
        self.report_installed = False
        self._firmware_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ flash
    def to_flash(self) -> dict[str, Any]:
        return {
            "version": self.list_version,
            "entries": [e.to_ocpp() for e in self.local_list.values()],
            "firmware_version": self.firmware_version,
            "report_installed": self.report_installed,
        }

    def from_flash(self, data: dict[str, Any]) -> None:
        update = ListUpdate.from_ocpp(
            {
                "listVersion": data.get("version", 0),
                "updateType": "Full",
                "localAuthorizationList": data.get("entries", []),
            }
        )
        self.local_list = apply_update({}, update)
        self.list_version = update.version
        self.firmware_version = str(data.get("firmware_version", self.firmware_version))
        self.report_installed = bool(data.get("report_installed", False))

    # ------------------------------------------------------------ local list
    @property
    def list_enabled(self) -> bool:
        return self._station.config.boolean("LocalAuthListEnabled")

    def list_status(self, id_tag: str, now: datetime) -> str | None:
        """The tag's status on the local list (Expired once past its expiry), or None."""
        if not self.list_enabled:
            return None
        entry = self.local_list.get(id_tag)
        if entry is None:
            return None
        if (
            entry.status == "Accepted"
            and entry.expiry_date is not None
            and entry.expiry_date <= now
        ):
            return "Expired"
        return entry.status

    def get_local_list_version(self) -> int:
        return self.list_version if self.list_enabled else DISABLED_VERSION

    def send_local_list(self, payload: dict[str, Any]) -> str:
        if not self.list_enabled:
            return "NotSupported"
        config = self._station.config
        items = payload.get("localAuthorizationList") or []
        if len(items) > config.integer("SendLocalListMaxLength"):
            return "Failed"
        try:
            update = ListUpdate.from_ocpp(payload)
        except (ValueError, ProfileError):
            return "Failed"
        if update.update_type is UpdateType.differential and update.version <= self.list_version:
            return "VersionMismatch"
        held = apply_update(self.local_list, update)
        if len(held) > config.integer("LocalAuthListMaxLength"):
            return "Failed"
        self.local_list, self.list_version = held, update.version
        self._station.persist()
        log.info(
            "local list updated",
            extra={
                "cp_id": self._station.id,
                "update_type": update.update_type.value,
                "list_version": update.version,
                "entries": len(held),
            },
        )
        return "Accepted"

    # ------------------------------------------------------------ reservations
    def active_reservation(self, now: datetime) -> StationReservation | None:
        reservation = self.reservation
        if reservation is not None and now >= reservation.expires_at:
            log.info(
                "reservation expired",
                extra={"cp_id": self._station.id, "reservation_id": reservation.reservation_id},
            )
            self.reservation = reservation = None
        return reservation

    def may_use(self, reservation: StationReservation, id_tag: str, now: datetime) -> bool:
        """Section 5.13: the reserved idTag, or a tag with the reservation's parentIdTag."""
        if id_tag == reservation.id_tag:
            return True
        entry = self.local_list.get(id_tag) if self.list_enabled else None
        return (
            reservation.parent_id_tag is not None
            and entry is not None
            and entry.parent_id_tag == reservation.parent_id_tag
            and self.list_status(id_tag, now) == "Accepted"
        )

    def reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None,
    ) -> str:
        station = self._station
        if connector_id != CONNECTOR:
            return "Rejected"  # connector 0: ReserveConnectorZeroSupported is false
        try:
            expires_at = parse_ocpp_datetime(expiry_date)
        except ProfileError:
            return "Rejected"
        now = station.advance()
        state = station.state
        if state.status.value == "Faulted":
            return "Faulted"
        if not state.operative:
            return "Unavailable"
        current = self.active_reservation(now)
        if current is not None and current.reservation_id != reservation_id:
            return "Occupied"
        if station.transaction_running or state.status.value != "Available":
            return "Occupied"
        if expires_at <= now:
            return "Rejected"
        self.reservation = StationReservation(reservation_id, id_tag, parent_id_tag, expires_at)
        log.info(
            "reserved",
            extra={"cp_id": station.id, "reservation_id": reservation_id, "id_tag": id_tag},
        )
        return "Accepted"

    def cancel_reservation(self, reservation_id: int) -> str:
        current = self.active_reservation(self._station.advance())
        if current is None or current.reservation_id != reservation_id:
            return "Rejected"
        self.reservation = None
        return "Accepted"

    # ------------------------------------------------------------ firmware
    def update_firmware(
        self, location: str, retrieve_date: str, retries: int, interval: int
    ) -> None:
        """UpdateFirmware.req (always answered with an empty UpdateFirmware.conf)."""
        if self._firmware_task is not None and not self._firmware_task.done():
            self._firmware_task.cancel()  # a newer request replaces the running one
        self._firmware_task = self._station.spawn(
            self._update_firmware(location, retrieve_date, max(1, retries), interval), "firmware"
        )

    def _notify(self, action: str, status: str) -> None:
        if action == "FirmwareStatusNotification":
            self.firmware_status = status
        else:
            self.diagnostics_status = status
        self._station.send_volatile(action, {"status": status})

    async def _update_firmware(
        self, location: str, retrieve_date: str, attempts: int, interval_s: int
    ) -> None:
        station = self._station
        try:
            start = parse_ocpp_datetime(retrieve_date)
        except ProfileError:
            start = station.now()
        await sleep_simulated((start - station.now()).total_seconds(), station.speed)
        data: bytes | None = None
        for attempt in range(attempts):
            self._notify("FirmwareStatusNotification", "Downloading")
            if _is_http(location):
                try:
                    data = await asyncio.to_thread(_http_get, location)
                    break
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    log.warning(
                        "firmware download failed",
                        extra={"cp_id": station.id, "attempt": attempt + 1, "error": str(exc)},
                    )
            if attempt + 1 < attempts:
                await sleep_simulated(interval_s, station.speed)
        if data is None:
            self._notify("FirmwareStatusNotification", "DownloadFailed")
            return
        self._notify("FirmwareStatusNotification", "Downloaded")
        version = _firmware_version(data)
        # Installing interrupts charging: wait for the running transaction to end.
        while station.transaction_running:
            await sleep_simulated(station.options.boot_retry_s, station.speed)
        self._notify("FirmwareStatusNotification", "Installing")
        await sleep_simulated(INSTALL_S, station.speed)
        if version is None:
            self._notify("FirmwareStatusNotification", "InstallationFailed")
            return
        self.firmware_version = version
        self.report_installed = True
        self.firmware_status = "Installed"
        station.persist()
        log.info("firmware installed; rebooting", extra={"cp_id": station.id, "version": version})
        station.request_reboot("Hard")

    def on_accepted(self) -> None:
        """After a boot: tell the central system the firmware it asked for is installed."""
        if self.report_installed:
            self.report_installed = False
            self._station.persist()
            self._notify("FirmwareStatusNotification", "Installed")
            self.firmware_status = "Idle"

    # ------------------------------------------------------------ diagnostics
    def get_diagnostics(self, location: str, retries: int, interval_s: int) -> str | None:
        """GetDiagnostics.req: the file name it will upload (None: nothing to upload)."""
        station = self._station
        now = station.now()
        name = f"diagnostics-{station.id}-{now.strftime('%Y%m%dT%H%M%SZ')}.txt"
        station.spawn(self._upload(location, name, max(1, retries), interval_s), "diagnostics")
        return name

    def _diagnostics_text(self) -> bytes:
        station = self._station
        entries, _ = station.config.get()  # AuthorizationKey is write-only: never in here
        body = {
            "chargePointId": station.id,
            "firmwareVersion": self.firmware_version,
            "time": messages.timestamp(station.now()),
            "status": station.state.status.value,
            "configuration": {e.key: e.value for e in entries},
            "localListVersion": self.list_version,
            "sent": dict(station.stats.sent),
            "sessions": len(station.sessions),
        }
        return json.dumps(body, indent=2, sort_keys=True).encode()

    async def _upload(self, location: str, name: str, attempts: int, interval_s: int) -> None:
        station = self._station
        await asyncio.sleep(0)  # the GetDiagnostics.conf goes out first
        url = location if location.endswith("/") else location + "/"
        for attempt in range(attempts):
            self._notify("DiagnosticsStatusNotification", "Uploading")
            if _is_http(url):
                try:
                    await asyncio.to_thread(_http_put, url + name, self._diagnostics_text())
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    log.warning(
                        "diagnostics upload failed",
                        extra={"cp_id": station.id, "attempt": attempt + 1, "error": str(exc)},
                    )
                else:
                    self._notify("DiagnosticsStatusNotification", "Uploaded")
                    self.diagnostics_status = "Idle"
                    return
            if attempt + 1 < attempts:
                await sleep_simulated(interval_s, station.speed)
        self._notify("DiagnosticsStatusNotification", "UploadFailed")
        self.diagnostics_status = "Idle"


def _firmware_version(data: bytes) -> str | None:
    """The version a virtual firmware file carries: its first line (None: unreadable)."""
    try:
        first = data.decode("utf-8").splitlines()[0].strip()
    except (UnicodeDecodeError, IndexError):
        return None
    if not first or len(first) > MAX_FIRMWARE_VERSION or not first.isprintable():
        return None
    return first
