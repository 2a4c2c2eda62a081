"""Configuration keys of a virtual charge point (OCPP 1.6 chapter 9), as pure code.

GetConfiguration and ChangeConfiguration work on this table. Keys are CiString50, so they
are looked up case-insensitively (spec 4.3/5.4 "Ci" = case-insensitive). Values travel as
strings; the table says how to read and check them:

- ``integer`` keys hold a non-negative integer (seconds, counts);
- ``boolean`` keys hold ``true`` / ``false`` (any case, answered in lower case);
- ``csl`` keys hold a comma-separated list, optionally restricted to known members and to
  the length in a companion ``...MaxLength`` key (spec 9.1);
- ``AuthorizationKey`` (OCPP 1.6 security whitepaper) is write-only: it is never reported
  by GetConfiguration; the station uses a changed key at its next connection.

Read-only keys are answered ``Rejected`` on change, unknown ones ``NotSupported`` and
values that do not fit ``Rejected`` (spec 5.3).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from csms.errors import ConfigError


class KeyType(StrEnum):
    boolean = "boolean"
    integer = "integer"
    csl = "csl"
    string = "string"


class ChangeStatus(StrEnum):
    """ChangeConfiguration.conf status (spec 7.9 ConfigurationStatus)."""

    accepted = "Accepted"
    rejected = "Rejected"
    reboot_required = "RebootRequired"
    not_supported = "NotSupported"


# What the virtual meter can measure (a subset of spec 7.31 Measurand).
SUPPORTED_MEASURANDS: Final = frozenset(
    {
        "Energy.Active.Import.Register",
        "Power.Active.Import",
        "Power.Offered",
        "Current.Import",
        "Current.Offered",
        "Voltage",
        "SoC",
    }
)
# Spec 9.1.9: per connector "<connector>.<rotation>"; NotApplicable for one-phase units.
PHASE_ROTATIONS: Final = frozenset(
    {"NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR"}
)
FEATURE_PROFILES: Final = (
    "Core",
    "FirmwareManagement",
    "LocalAuthListManagement",
    "Reservation",
    "SmartCharging",
    "RemoteTrigger",
)
MAX_AUTHORIZATION_KEY_LENGTH: Final = 40  # 20 bytes as hex (security whitepaper)


@dataclass(frozen=True, slots=True)
class KeyDef:
    """One configuration key: its type, whether a CSMS may change it, its default."""

    name: str
    type: KeyType
    readonly: bool
    default: str
    write_only: bool = False
    members: frozenset[str] | None = None  # allowed items of a csl key
    max_items_key: str | None = None  # the key holding a csl key's maximum length
    minimum: int = 0


def _int(name: str, default: int, *, readonly: bool = False, minimum: int = 0) -> KeyDef:
    return KeyDef(name, KeyType.integer, readonly, str(default), minimum=minimum)


def _bool(name: str, default: bool, *, readonly: bool = False) -> KeyDef:
    return KeyDef(name, KeyType.boolean, readonly, "true" if default else "false")


def _measurands(name: str, default: str, max_key: str) -> KeyDef:
    return KeyDef(
        name,
        KeyType.csl,
        False,
        default,
        members=SUPPORTED_MEASURANDS,
        max_items_key=max_key,
    )


DEFAULT_SAMPLED_DATA: Final = (
    "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Current.Offered,SoC"
)

# The keys of spec 9.1 (Core), 9.4 (Smart Charging) and the security whitepaper that a
# simple AC wallbox implements. Defaults are common factory values.
STANDARD_KEYS: Final[tuple[KeyDef, ...]] = (
    _bool("AllowOfflineTxForUnknownId", False),
    _bool("AuthorizationCacheEnabled", True),
    KeyDef("AuthorizationKey", KeyType.string, False, "", write_only=True),
    _bool("AuthorizeRemoteTxRequests", False),
    _int("ClockAlignedDataInterval", 0),
    _int("ConnectionTimeOut", 60),
    KeyDef("ConnectorPhaseRotation", KeyType.csl, False, "1.RST"),
    _int("ConnectorPhaseRotationMaxLength", 2, readonly=True),
    _int("GetConfigurationMaxKeys", 64, readonly=True),
    _int("HeartbeatInterval", 300),
    _bool("LocalAuthorizeOffline", True),
    # Local Auth List Management (spec 9.2) and Reservation (9.3).
    _bool("LocalAuthListEnabled", True),
    _int("LocalAuthListMaxLength", 1000, readonly=True),
    _int("SendLocalListMaxLength", 1000, readonly=True),
    _bool("ReserveConnectorZeroSupported", False, readonly=True),
    _bool("LocalPreAuthorize", False),
    _measurands(
        "MeterValuesAlignedData", "Energy.Active.Import.Register", "MeterValuesAlignedDataMaxLength"
    ),
    _int("MeterValuesAlignedDataMaxLength", 8, readonly=True),
    _measurands("MeterValuesSampledData", DEFAULT_SAMPLED_DATA, "MeterValuesSampledDataMaxLength"),
    _int("MeterValuesSampledDataMaxLength", 8, readonly=True),
    _int("MeterValueSampleInterval", 60),
    _int("NumberOfConnectors", 1, readonly=True),
    _int("ResetRetries", 1),
    _bool("StopTransactionOnEVSideDisconnect", True),
    _bool("StopTransactionOnInvalidId", True),
    _measurands("StopTxnAlignedData", "", "StopTxnAlignedDataMaxLength"),
    _int("StopTxnAlignedDataMaxLength", 8, readonly=True),
    _measurands(
        "StopTxnSampledData", "Energy.Active.Import.Register", "StopTxnSampledDataMaxLength"
    ),
    _int("StopTxnSampledDataMaxLength", 8, readonly=True),
    KeyDef(
        "SupportedFeatureProfiles",
        KeyType.csl,
        True,
        ",".join(FEATURE_PROFILES),
    ),
    _int("TransactionMessageAttempts", 3, minimum=1),
    _int("TransactionMessageRetryInterval", 60),
    _bool("UnlockConnectorOnEVSideDisconnect", True),
    _int("WebSocketPingInterval", 20),
    # Smart Charging (spec 9.4); a station's quirks may lower or restrict these.
    _int("ChargeProfileMaxStackLevel", 10, readonly=True),
    KeyDef(
        "ChargingScheduleAllowedChargingRateUnit",
        KeyType.csl,
        True,
        "Current,Power",
        members=frozenset({"Current", "Power"}),
    ),
    _int("ChargingScheduleMaxPeriods", 48, readonly=True),
    _bool("ConnectorSwitch3to1PhaseSupported", False, readonly=True),
    _int("MaxChargingProfilesInstalled", 20, readonly=True),
)


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One element of GetConfiguration.conf `configurationKey` (spec 7.22 KeyValue)."""

    key: str
    readonly: bool
    value: str


class ChargerConfig:
    """The current values of one charge point's configuration keys."""

    def __init__(
        self, values: Mapping[str, str] | None = None, *, keys: Sequence[KeyDef] = STANDARD_KEYS
    ) -> None:
        self._defs = {d.name.lower(): d for d in keys}
        self._values = {d.name: d.default for d in keys}
        for name, value in (values or {}).items():
            definition = self._def(name)
            if definition is None:
                raise ConfigError(f"configuration key {name!r} is not known")
            problem = self._check(definition, value)
            if problem:
                raise ConfigError(f"configuration key {definition.name}: {problem}")
            self._values[definition.name] = self._normalise(definition, value)

    def _def(self, key: str) -> KeyDef | None:
        return self._defs.get(key.lower())

    # ----------------------------------------------------------------- reading
    def value(self, key: str) -> str:
        definition = self._def(key)
        if definition is None:
            raise KeyError(key)
        return self._values[definition.name]

    def integer(self, key: str) -> int:
        return int(self.value(key))

    def boolean(self, key: str) -> bool:
        return self.value(key) == "true"

    def csl(self, key: str) -> tuple[str, ...]:
        return tuple(item for item in (p.strip() for p in self.value(key).split(",")) if item)

    def get(self, keys: Iterable[str] | None = None) -> tuple[list[ConfigEntry], list[str]]:
        """GetConfiguration.req: known entries and unknown keys. No keys = every key.

        Write-only keys are never reported; asked for by name they count as unknown, so a
        CSMS cannot tell them apart from absent ones.
        """
        wanted = list(keys) if keys else [d.name for d in self._defs.values() if not d.write_only]
        entries: list[ConfigEntry] = []
        unknown: list[str] = []
        for key in wanted:
            definition = self._def(key)
            if definition is None or definition.write_only:
                unknown.append(key)
                continue
            entries.append(
                ConfigEntry(definition.name, definition.readonly, self._values[definition.name])
            )
        return entries, unknown

    # ----------------------------------------------------------------- writing
    def change(self, key: str, value: str) -> ChangeStatus:
        """ChangeConfiguration.req: check, store and report the outcome."""
        definition = self._def(key)
        if definition is None:
            return ChangeStatus.not_supported
        if definition.readonly or self._check(definition, value):
            return ChangeStatus.rejected
        self._values[definition.name] = self._normalise(definition, value)
        return ChangeStatus.accepted

    def set_local(self, key: str, value: str) -> None:
        """Set a key from the station's own side (also read-only ones, e.g. quirks)."""
        definition = self._def(key)
        if definition is None:
            raise KeyError(key)
        problem = self._check(definition, value)
        if problem:
            raise ConfigError(f"configuration key {definition.name}: {problem}")
        self._values[definition.name] = self._normalise(definition, value)

    def _check(self, definition: KeyDef, value: str) -> str | None:
        """Why `value` does not fit `definition`, or None when it does."""
        if definition.type is KeyType.integer:
            try:
                number = int(value.strip())
            except ValueError:
                return f"expected an integer, got {value!r}"
            if number < definition.minimum:
                return f"expected an integer >= {definition.minimum}, got {number}"
            return None
        if definition.type is KeyType.boolean:
            if value.strip().lower() not in ("true", "false"):
                return f"expected true or false, got {value!r}"
            return None
        if definition.type is KeyType.csl:
            items = [p.strip() for p in value.split(",") if p.strip()]
            if definition.members is not None:
                bad = [i for i in items if i not in definition.members]
                if bad:
                    return f"unsupported item(s) {', '.join(bad)}"
            if definition.max_items_key is not None:
                limit = self.integer(definition.max_items_key)
                if len(items) > limit:
                    return f"at most {limit} items, got {len(items)}"
            if definition.name == "ConnectorPhaseRotation":
                return _check_rotation(items)
            return None
        if definition.name == "AuthorizationKey" and not (
            0 < len(value) <= MAX_AUTHORIZATION_KEY_LENGTH and value.isprintable()
        ):
            return f"expected 1-{MAX_AUTHORIZATION_KEY_LENGTH} printable characters"
        return None

    @staticmethod
    def _normalise(definition: KeyDef, value: str) -> str:
        if definition.type is KeyType.integer:
            return str(int(value.strip()))
        if definition.type is KeyType.boolean:
            return value.strip().lower()
        if definition.type is KeyType.csl:
            return ",".join(p.strip() for p in value.split(",") if p.strip())
        return value

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, str]:
        """Every value, write-only ones included (this is the charger's own flash)."""
        return dict(self._values)

    @classmethod
    def from_dict(cls, values: Mapping[str, str]) -> ChargerConfig:
        """Inverse of to_dict: the station's own flash, restored as it was written."""
        config = cls()
        for name, value in values.items():
            definition = config._def(name)
            if definition is not None:
                config._values[definition.name] = str(value)
        return config


def _check_rotation(items: Sequence[str]) -> str | None:
    for item in items:
        connector, _, rotation = item.partition(".")
        if not connector.isdigit() or rotation not in PHASE_ROTATIONS:
            return f"expected items like 1.RST, got {item!r}"
    return None


# Supply phase of each station phase -> spec 9.1.9 letter (R = L1, S = L2, T = L3).
_ROTATION_LETTERS: Final = {"L1": "R", "L2": "S", "L3": "T"}


def phase_rotation(wiring: Sequence[str]) -> str:
    """ConnectorPhaseRotation of connector 1 for a wiring such as ("L2", "L3", "L1")."""
    if len(wiring) != 3:
        return "1.NotApplicable"
    return "1." + "".join(_ROTATION_LETTERS[p] for p in wiring)
