"""The one exception tree of GarageGrid.

    GarageGridError
    ├── ConfigError            bad setting, bad CLI value, bad scenario file
    ├── ProfileError           an invalid charging profile (csms.profiles; also a ValueError)
    │   └── ProfileRejectedError   a valid profile the charge point refuses
    ├── StoreError             the database is locked, gone or refused a write
    │   └── NotFoundError      a row that was asked for does not exist
    └── ChargePointError       a charge point is not connected or did not answer
        ├── NotConnectedError
        └── CallFailedError    the charge point answered with a CALLERROR or timed out

OCPP-facing errors (what a charge point gets back as a CALLERROR) are subclasses of
`ocpp.exceptions.OCPPError` and live in `csms.ocpp16.errors`, so that their error code is
the OCPP 1.6 one.
"""

from __future__ import annotations


class GarageGridError(Exception):
    """Root of every error GarageGrid raises on purpose."""


class ConfigError(GarageGridError):
    """A setting, command-line value or scenario file is invalid."""


class StoreError(GarageGridError):
    """The database could not be read or written."""


class NotFoundError(StoreError):
    """A row that was asked for does not exist."""


class ChargePointError(GarageGridError):
    """Something went wrong talking to a charge point."""


class NotConnectedError(ChargePointError):
    """The charge point has no open connection to this CSMS."""


class CallFailedError(ChargePointError):
    """The charge point answered a CALL with a CALLERROR, or not at all."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
