"""Charging-profile arithmetic of OCPP 1.6 section 3.13 (Smart Charging), as pure code.

The CSMS uses it to build the profiles it sends and to predict what a charger will do; the
virtual chargers use it to obey what they were sent, every simulated second. So both sides
run the same rules. No clock, no I/O: every instant is an argument.

    ProfileError(GarageGridError, ValueError)   content that OCPP 1.6 does not allow
    └── ProfileRejectedError                    valid content that the charge point refuses
                                                (no transaction, limits, unknown connector):
                                                SetChargingProfile.conf status Rejected

Spec references ("spec" = OCPP 1.6 edition 2; "errata" = the 1.6 errata sheet v4.0):

- Purposes and scope (3.13.1): ChargePointMaxProfile only on connector 0 and limits the
  whole charge point; TxDefaultProfile on connector 0 applies to every connector, one on a
  connector replaces it for that connector; TxProfile only on a connector with an active
  transaction, and is deleted when the transaction stops.
- Stacking (3.13.2): within a purpose the profile with the highest stackLevel that is valid
  at the instant prevails. A profile whose schedule has not started or whose duration has
  elapsed does not apply, so a lower stack level takes over (5.16 notes, errata 3.43).
- Combining (3.13.3): the limit is min(ChargePointMaxProfile, TxProfile of the running
  transaction if one applies, else TxDefaultProfile). No profile at all = no limit (3.13.6).
- Units (7.12): A is per phase; W is the total, current per phase = W / (V x phases), and
  an absent numberPhases means 3.

Interpretations where the spec is silent, chosen to be safe and predictable:

- A connector's own TxDefaultProfile and one on connector 0 are stacked together; at equal
  stack level the connector's own wins ("replaced only for that specific connector").
- Absolute without startSchedule runs from the start of charging (7.13 startSchedule), like
  Relative. Without a transaction "start of charging" is the instant asked about (limit_at)
  or the start of the requested window (composite_schedule): what a car plugging in then
  would get.
- Recurring counts whole days/weeks of elapsed time from startSchedule (so in UTC; spec
  3.13.7 notes DST needs special profiles) and does not apply before startSchedule.
- When profiles with different numberPhases meet, the fewest phases win (each profile says
  how many phases may be used) and every limit is converted at that phase count.
- ClearChargingProfile with an id clears that profile only; without one, every given
  criterion must match (5.5 / 6.13: "either a specific profile or a selection").
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, TypeVar

from csms.errors import GarageGridError

__all__ = [
    "DEFAULT_MAX_PERIODS",
    "DEFAULT_MAX_PROFILES",
    "DEFAULT_MAX_STACK_LEVEL",
    "DEFAULT_PHASES",
    "DEFAULT_UNLIMITED_A",
    "DEFAULT_VOLTAGE_V",
    "MIN_CHARGING_CURRENT_A",
    "ChargingProfile",
    "ChargingProfileKind",
    "ChargingProfilePurpose",
    "ChargingRateUnit",
    "ChargingSchedule",
    "ChargingSchedulePeriod",
    "InstalledProfile",
    "Limit",
    "LimitChange",
    "ProfileError",
    "ProfileRejectedError",
    "ProfileStore",
    "RecurrencyKind",
    "composite_from_ocpp",
    "composite_schedule",
    "composite_to_ocpp",
    "default_profile",
    "format_ocpp_datetime",
    "limit_at",
    "limit_timeline",
    "parse_ocpp_datetime",
    "profile_from_ocpp",
    "profile_to_ocpp",
    "schedule_from_ocpp",
    "schedule_to_ocpp",
    "tx_profile",
]

# "If numberPhases in a ChargingSchedulePeriod is absent, 3 SHALL be assumed" (spec 7.12).
DEFAULT_PHASES: Final = 3
# "The set voltage for the area (hence, 230 of 110 volt)" (spec 7.12).
DEFAULT_VOLTAGE_V: Final = 230.0
# IEC 61851-1: the control-pilot PWM cannot offer 0-6 A; below 6 A means no charging.
MIN_CHARGING_CURRENT_A: Final = 6.0
# OCPP cannot say "no limit" inside a schedule; a charger reports its own maximum there.
# 32 A per phase (22 kW on three phases) is the usual ceiling of an AC wallbox.
DEFAULT_UNLIMITED_A: Final = 32.0
# Generous defaults for the configuration keys of spec 3.13.5 / 9.4; real chargers vary
# (several accept stack level 0 only), so the virtual chargers set their own.
DEFAULT_MAX_STACK_LEVEL: Final = 10  # ChargeProfileMaxStackLevel
DEFAULT_MAX_PROFILES: Final = 20  # MaxChargingProfilesInstalled
DEFAULT_MAX_PERIODS: Final = 48  # ChargingScheduleMaxPeriods

_STORE_FORMAT: Final = "garagegrid.profile-store/1"
_RECURRENCE: Final = {"Daily": timedelta(days=1), "Weekly": timedelta(weeks=1)}


class ProfileError(GarageGridError, ValueError):
    """A charging profile or schedule breaks an OCPP 1.6 rule; the message names the field."""


class ProfileRejectedError(ProfileError):
    """A valid profile that this charge point refuses (SetChargingProfile.conf Rejected)."""


class ChargingProfilePurpose(StrEnum):
    ChargePointMaxProfile = "ChargePointMaxProfile"
    TxDefaultProfile = "TxDefaultProfile"
    TxProfile = "TxProfile"


class ChargingProfileKind(StrEnum):
    Absolute = "Absolute"
    Recurring = "Recurring"
    Relative = "Relative"


class RecurrencyKind(StrEnum):
    Daily = "Daily"
    Weekly = "Weekly"


class ChargingRateUnit(StrEnum):
    A = "A"
    W = "W"


# --------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and value.utcoffset() is None:
        raise ProfileError(f"{name} must carry a time zone, got {value.isoformat()}")


def _tenth(value: float, name: str) -> float:
    """Check the schema's `multipleOf: 0.1` and return the value rounded to that tenth."""
    if not math.isfinite(value) or value < 0:
        raise ProfileError(f"{name} must be a finite number >= 0, got {value!r}")
    scaled = value * 10
    if abs(scaled - round(scaled)) > 1e-6:
        raise ProfileError(f"{name} must be a multiple of 0.1, got {value!r}")
    return round(value, 1)


def _floor_tenth(value: float) -> float:
    """Round down to 0.1: a reported or sent limit must never exceed what is allowed."""
    # The epsilon absorbs binary noise such as 10999.999999999998 for 11000.
    return math.floor(value * 10 + 1e-6) / 10


@dataclass(frozen=True, slots=True)
class ChargingSchedulePeriod:
    """One step of a schedule (spec 7.14): from `start_period_s` on, at most `limit`."""

    start_period_s: int
    limit: float
    number_phases: int | None = None

    def __post_init__(self) -> None:
        if self.start_period_s < 0:
            raise ProfileError(f"startPeriod must be >= 0, got {self.start_period_s}")
        object.__setattr__(self, "limit", _tenth(self.limit, "limit"))
        if self.number_phases is not None and self.number_phases not in (1, 2, 3):
            raise ProfileError(f"numberPhases must be 1, 2 or 3, got {self.number_phases}")


@dataclass(frozen=True, slots=True)
class ChargingSchedule:
    """Limits over time (spec 7.13). `periods` is stored as a tuple."""

    rate_unit: ChargingRateUnit
    periods: Sequence[ChargingSchedulePeriod]
    duration_s: int | None = None
    start_schedule: datetime | None = None
    min_charging_rate: float | None = None

    def __post_init__(self) -> None:
        periods = tuple(self.periods)
        object.__setattr__(self, "periods", periods)
        if not periods:
            raise ProfileError("chargingSchedulePeriod must hold at least one period")
        if periods[0].start_period_s != 0:
            # Errata 3.45: "The startPeriod of the first ChargingSchedulePeriod ... SHALL be 0".
            raise ProfileError(
                f"chargingSchedulePeriod[0].startPeriod must be 0, got {periods[0].start_period_s}"
            )
        for index, (before, after) in enumerate(itertools.pairwise(periods), 1):
            if after.start_period_s <= before.start_period_s:
                raise ProfileError(
                    f"chargingSchedulePeriod[{index}].startPeriod must be greater than the "
                    f"previous one ({before.start_period_s}), got {after.start_period_s}"
                )
        if self.duration_s is not None and self.duration_s <= 0:
            raise ProfileError(f"duration must be > 0 seconds, got {self.duration_s}")
        _require_aware(self.start_schedule, "startSchedule")
        if self.min_charging_rate is not None:
            rate = _tenth(self.min_charging_rate, "minChargingRate")
            object.__setattr__(self, "min_charging_rate", rate)


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    """A charging profile (spec 7.8) as sent in SetChargingProfile.req `csChargingProfiles`."""

    profile_id: int
    stack_level: int
    purpose: ChargingProfilePurpose
    kind: ChargingProfileKind
    schedule: ChargingSchedule
    transaction_id: int | None = None
    recurrency_kind: RecurrencyKind | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    def __post_init__(self) -> None:
        if self.stack_level < 0:
            raise ProfileError(f"stackLevel must be >= 0, got {self.stack_level}")
        recurring = self.kind is ChargingProfileKind.Recurring
        if recurring and self.recurrency_kind is None:
            raise ProfileError("recurrencyKind is required when chargingProfileKind is Recurring")
        if not recurring and self.recurrency_kind is not None:
            # Errata 3.56: recurrencyKind "SHALL only be used when ... Recurring".
            raise ProfileError(
                f"recurrencyKind must be absent when chargingProfileKind is {self.kind.value}"
            )
        if recurring and self.schedule.start_schedule is None:
            raise ProfileError("chargingSchedule.startSchedule is required for a Recurring profile")
        if self.kind is ChargingProfileKind.Relative and self.schedule.start_schedule is not None:
            raise ProfileError(
                "chargingSchedule.startSchedule must be absent for a Relative profile "
                "(it starts with the transaction)"
            )
        if self.transaction_id is not None and self.purpose is not ChargingProfilePurpose.TxProfile:
            # Spec 7.8: transactionId is "only valid if ChargingProfilePurpose is TxProfile".
            raise ProfileError(
                f"transactionId is only allowed for a TxProfile, not a {self.purpose.value}"
            )
        _require_aware(self.valid_from, "validFrom")
        _require_aware(self.valid_to, "validTo")
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ProfileError(
                f"validTo ({self.valid_to.isoformat()}) must be after "
                f"validFrom ({self.valid_from.isoformat()})"
            )


@dataclass(frozen=True, slots=True)
class Limit:
    """What a connector may draw at one instant.

    `current_a` is per phase, `power_w` the total over `number_phases`; both describe the
    same limit (W = A x V x phases). `profile_ids` are the profiles that were combined.
    `min_current_a` is the largest minChargingRate among them, in A per phase.
    """

    current_a: float
    power_w: float
    number_phases: int
    profile_ids: tuple[int, ...]
    min_current_a: float | None = None

    def in_unit(self, unit: ChargingRateUnit) -> float:
        return self.current_a if unit is ChargingRateUnit.A else self.power_w


@dataclass(frozen=True, slots=True)
class LimitChange:
    """From `at` on (until the next change) the connector may draw `limit`; None = unlimited."""

    at: datetime
    limit: Limit | None


# --------------------------------------------------------------------------------------
# OCPP JSON <-> domain
# --------------------------------------------------------------------------------------

_CAMEL_KEYS: Final = (
    "chargingProfileId",
    "transactionId",
    "stackLevel",
    "chargingProfilePurpose",
    "chargingProfileKind",
    "recurrencyKind",
    "validFrom",
    "validTo",
    "chargingSchedule",
    "duration",
    "startSchedule",
    "chargingRateUnit",
    "chargingSchedulePeriod",
    "minChargingRate",
    "startPeriod",
    "limit",
    "numberPhases",
)
# The `ocpp` library hands @on handlers snake_case keys (and call results too); accept both.
_SNAKE_TO_CAMEL: Final = {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): k for k in _CAMEL_KEYS}

_E = TypeVar("_E", bound=StrEnum)


def _fields(value: object, path: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ProfileError(f"{path} must be an object, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for raw_key, item in value.items():
        key = _SNAKE_TO_CAMEL.get(raw_key, raw_key)
        if key not in required and key not in optional:
            raise ProfileError(f"{path}.{raw_key} is not an allowed field")
        if item is not None:  # the library's dataclasses send None for unset fields
            out[key] = item
    missing = sorted(required - out.keys())
    if missing:
        raise ProfileError(f"{path}.{missing[0]} is required")
    return out


def _int(value: object, path: str) -> int:
    # bool is an int in Python, never in JSON.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(f"{path} must be an integer, got {value!r}")
    return value


def _number(value: object, path: str) -> float:
    # The `ocpp` library parses these schemas' numbers as Decimal (multipleOf 0.1).
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ProfileError(f"{path} must be a number, got {value!r}")
    return float(value)


def _enum(cls: type[_E], value: object, path: str) -> _E:
    allowed = ", ".join(member.value for member in cls)
    if not isinstance(value, str) or value not in cls.__members__.values():
        raise ProfileError(f"{path} must be one of {allowed}, got {value!r}")
    return cls(value)


def parse_ocpp_datetime(value: object, path: str = "dateTime") -> datetime:
    """ISO 8601 with a time zone (spec 3.15), e.g. "2013-01-01T00:00Z" or "...+02:00"."""
    if not isinstance(value, str):
        raise ProfileError(f"{path} must be an ISO 8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ProfileError(f"{path} is not an ISO 8601 date-time: {value!r}") from None
    if parsed.utcoffset() is None:
        raise ProfileError(f"{path} must carry a time zone (e.g. Z), got {value!r}")
    return parsed


def format_ocpp_datetime(value: datetime) -> str:
    """UTC with a "Z", as spec 3.14 recommends."""
    _require_aware(value, "dateTime")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _wrap(path: str, build: Any, /, **kwargs: Any) -> Any:
    """Build a dataclass, prefixing the path to any rule it finds broken."""
    try:
        return build(**kwargs)
    except ProfileRejectedError:
        raise
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None


def _period_from_ocpp(value: object, path: str) -> ChargingSchedulePeriod:
    d = _fields(value, path, {"startPeriod", "limit"}, {"numberPhases"})
    phases = d.get("numberPhases")
    period: ChargingSchedulePeriod = _wrap(
        path,
        ChargingSchedulePeriod,
        start_period_s=_int(d["startPeriod"], f"{path}.startPeriod"),
        limit=_number(d["limit"], f"{path}.limit"),
        number_phases=None if phases is None else _int(phases, f"{path}.numberPhases"),
    )
    return period


def _schedule_from_fields(d: dict[str, Any], path: str) -> ChargingSchedule:
    raw_periods = d["chargingSchedulePeriod"]
    periods_path = f"{path}.chargingSchedulePeriod"
    if not isinstance(raw_periods, list | tuple):
        raise ProfileError(f"{periods_path} must be an array")
    periods = tuple(
        _period_from_ocpp(item, f"{periods_path}[{index}]")
        for index, item in enumerate(raw_periods)
    )
    duration = d.get("duration")
    start = d.get("startSchedule")
    rate = d.get("minChargingRate")
    schedule: ChargingSchedule = _wrap(
        path,
        ChargingSchedule,
        rate_unit=_enum(ChargingRateUnit, d["chargingRateUnit"], f"{path}.chargingRateUnit"),
        periods=periods,
        duration_s=None if duration is None else _int(duration, f"{path}.duration"),
        start_schedule=None
        if start is None
        else parse_ocpp_datetime(start, f"{path}.startSchedule"),
        min_charging_rate=None if rate is None else _number(rate, f"{path}.minChargingRate"),
    )
    return schedule


_SCHEDULE_REQUIRED: Final = {"chargingRateUnit", "chargingSchedulePeriod"}
_SCHEDULE_OPTIONAL: Final = {"duration", "startSchedule", "minChargingRate"}


def schedule_from_ocpp(d: Mapping[str, Any], path: str = "chargingSchedule") -> ChargingSchedule:
    """Parse an OCPP `chargingSchedule` object (camelCase or the library's snake_case)."""
    fields = _fields(d, path, _SCHEDULE_REQUIRED, _SCHEDULE_OPTIONAL)
    return _schedule_from_fields(fields, path)


def _period_to_ocpp(period: ChargingSchedulePeriod) -> dict[str, Any]:
    out: dict[str, Any] = {"startPeriod": period.start_period_s, "limit": period.limit}
    if period.number_phases is not None:
        out["numberPhases"] = period.number_phases
    return out


def schedule_to_ocpp(schedule: ChargingSchedule) -> dict[str, Any]:
    """The OCPP `chargingSchedule` object, camelCase, optional fields omitted when unset."""
    out: dict[str, Any] = {}
    if schedule.duration_s is not None:
        out["duration"] = schedule.duration_s
    if schedule.start_schedule is not None:
        out["startSchedule"] = format_ocpp_datetime(schedule.start_schedule)
    out["chargingRateUnit"] = schedule.rate_unit.value
    out["chargingSchedulePeriod"] = [_period_to_ocpp(p) for p in schedule.periods]
    if schedule.min_charging_rate is not None:
        out["minChargingRate"] = schedule.min_charging_rate
    return out


def composite_to_ocpp(schedule: ChargingSchedule) -> dict[str, Any]:
    """`chargingSchedule` of GetCompositeSchedule.conf.

    Errata 3.57: startSchedule is omitted there; send `schedule.start_schedule` as the
    message's `scheduleStart` (format_ocpp_datetime) instead.
    """
    out = schedule_to_ocpp(schedule)
    out.pop("startSchedule", None)
    return out


def composite_from_ocpp(d: Mapping[str, Any], schedule_start: datetime | str) -> ChargingSchedule:
    """Parse GetCompositeSchedule.conf `chargingSchedule`, anchored at its `scheduleStart`."""
    start = (
        parse_ocpp_datetime(schedule_start, "scheduleStart")
        if isinstance(schedule_start, str)
        else schedule_start
    )
    schedule = schedule_from_ocpp(d)
    return replace(schedule, start_schedule=start)


def profile_from_ocpp(d: Mapping[str, Any]) -> ChargingProfile:
    """Parse SetChargingProfile.req `csChargingProfiles` (or RemoteStartTransaction's
    `chargingProfile`). Raises ProfileError naming the offending field."""
    path = "csChargingProfiles"
    f = _fields(
        d,
        path,
        {
            "chargingProfileId",
            "stackLevel",
            "chargingProfilePurpose",
            "chargingProfileKind",
            "chargingSchedule",
        },
        {"transactionId", "recurrencyKind", "validFrom", "validTo"},
    )
    schedule_path = f"{path}.chargingSchedule"
    schedule_fields = _fields(
        f["chargingSchedule"], schedule_path, _SCHEDULE_REQUIRED, _SCHEDULE_OPTIONAL
    )
    transaction = f.get("transactionId")
    recurrency = f.get("recurrencyKind")
    valid_from = f.get("validFrom")
    valid_to = f.get("validTo")
    profile: ChargingProfile = _wrap(
        path,
        ChargingProfile,
        profile_id=_int(f["chargingProfileId"], f"{path}.chargingProfileId"),
        stack_level=_int(f["stackLevel"], f"{path}.stackLevel"),
        purpose=_enum(
            ChargingProfilePurpose, f["chargingProfilePurpose"], f"{path}.chargingProfilePurpose"
        ),
        kind=_enum(ChargingProfileKind, f["chargingProfileKind"], f"{path}.chargingProfileKind"),
        schedule=_schedule_from_fields(schedule_fields, schedule_path),
        transaction_id=None if transaction is None else _int(transaction, f"{path}.transactionId"),
        recurrency_kind=(
            None
            if recurrency is None
            else _enum(RecurrencyKind, recurrency, f"{path}.recurrencyKind")
        ),
        valid_from=None
        if valid_from is None
        else parse_ocpp_datetime(valid_from, f"{path}.validFrom"),
        valid_to=None if valid_to is None else parse_ocpp_datetime(valid_to, f"{path}.validTo"),
    )
    return profile


def profile_to_ocpp(profile: ChargingProfile) -> dict[str, Any]:
    """The OCPP `csChargingProfiles` object, camelCase, optional fields omitted when unset."""
    out: dict[str, Any] = {"chargingProfileId": profile.profile_id}
    if profile.transaction_id is not None:
        out["transactionId"] = profile.transaction_id
    out["stackLevel"] = profile.stack_level
    out["chargingProfilePurpose"] = profile.purpose.value
    out["chargingProfileKind"] = profile.kind.value
    if profile.recurrency_kind is not None:
        out["recurrencyKind"] = profile.recurrency_kind.value
    if profile.valid_from is not None:
        out["validFrom"] = format_ocpp_datetime(profile.valid_from)
    if profile.valid_to is not None:
        out["validTo"] = format_ocpp_datetime(profile.valid_to)
    out["chargingSchedule"] = schedule_to_ocpp(profile.schedule)
    return out


# --------------------------------------------------------------------------------------
# Installed profiles
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstalledProfile:
    connector_id: int
    profile: ChargingProfile


@dataclass(frozen=True, slots=True)
class ProfileStore:
    """The profiles installed on one charge point; connector 0 is the charge point itself.

    Immutable: every change returns a new store, so a charger task can swap its reference
    and a CSMS can keep a predicted copy beside it. The limits mirror the configuration
    keys of spec 3.13.5; `connector_count` (if known) rejects unknown connectors.
    """

    entries: tuple[InstalledProfile, ...] = ()
    max_stack_level: int = DEFAULT_MAX_STACK_LEVEL
    max_profiles: int = DEFAULT_MAX_PROFILES
    max_periods: int = DEFAULT_MAX_PERIODS
    allowed_rate_units: frozenset[ChargingRateUnit] = frozenset(ChargingRateUnit)
    connector_count: int | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def profiles_on(self, connector_id: int) -> tuple[ChargingProfile, ...]:
        """Profiles installed on exactly this connector (0 = the charge point)."""
        return tuple(e.profile for e in self.entries if e.connector_id == connector_id)

    def install(
        self, connector_id: int, profile: ChargingProfile, *, transaction_id: int | None = None
    ) -> ProfileStore:
        """SetChargingProfile.req: return the store with `profile` installed.

        `transaction_id` is the transaction running on `connector_id` (None if none).
        Raises ProfileRejectedError where the spec says the charge point rejects.
        """
        purpose = profile.purpose
        if purpose is ChargingProfilePurpose.TxProfile:
            if transaction_id is None:
                raise ProfileRejectedError(
                    f"TxProfile {profile.profile_id} rejected: no transaction is active on "
                    f"connector {connector_id} (spec 3.13.1)"
                )
            if profile.transaction_id is not None and profile.transaction_id != transaction_id:
                raise ProfileRejectedError(
                    f"TxProfile {profile.profile_id} rejected: transactionId "
                    f"{profile.transaction_id} does not match transaction {transaction_id} "
                    f"running on connector {connector_id}"
                )
        return self._add(connector_id, profile)

    def install_remote_start_profile(
        self, connector_id: int, profile: ChargingProfile
    ) -> ProfileStore:
        """Install the TxProfile of a RemoteStartTransaction.req for the transaction it starts.

        Spec 5.11 / 5.16.2: its transactionId SHALL NOT be set; the charger applies it to the
        new transaction before the CSMS has assigned the transaction id.
        """
        if profile.purpose is not ChargingProfilePurpose.TxProfile:
            raise ProfileRejectedError(
                f"chargingProfilePurpose of a RemoteStartTransaction profile must be TxProfile, "
                f"got {profile.purpose.value}"
            )
        if profile.transaction_id is not None:
            raise ProfileRejectedError(
                "transactionId must not be set in a RemoteStartTransaction profile (spec 5.16.2)"
            )
        return self._add(connector_id, profile)

    def _add(self, connector_id: int, profile: ChargingProfile) -> ProfileStore:
        purpose = profile.purpose
        name = f"{purpose.value} {profile.profile_id}"
        if connector_id < 0 or (
            self.connector_count is not None and connector_id > self.connector_count
        ):
            raise ProfileRejectedError(f"{name} rejected: unknown connector {connector_id}")
        if purpose is ChargingProfilePurpose.ChargePointMaxProfile and connector_id != 0:
            raise ProfileRejectedError(
                f"{name} rejected: a ChargePointMaxProfile can only be set on connector 0 "
                f"(spec 3.13.1), got connector {connector_id}"
            )
        if purpose is ChargingProfilePurpose.TxProfile and connector_id == 0:
            raise ProfileRejectedError(
                f"{name} rejected: a TxProfile can only be set on a connector > 0 (spec 3.13.1)"
            )
        if profile.stack_level > self.max_stack_level:
            raise ProfileRejectedError(
                f"{name} rejected: stackLevel {profile.stack_level} exceeds "
                f"ChargeProfileMaxStackLevel {self.max_stack_level}"
            )
        if profile.schedule.rate_unit not in self.allowed_rate_units:
            allowed = ",".join(sorted(u.value for u in self.allowed_rate_units))
            raise ProfileRejectedError(
                f"{name} rejected: chargingRateUnit {profile.schedule.rate_unit.value} is not in "
                f"ChargingScheduleAllowedChargingRateUnit {allowed}"
            )
        if len(profile.schedule.periods) > self.max_periods:
            raise ProfileRejectedError(
                f"{name} rejected: {len(profile.schedule.periods)} periods exceed "
                f"ChargingScheduleMaxPeriods {self.max_periods}"
            )
        # Spec 5.16.3: a profile with the same id, or the same stackLevel and purpose (on the
        # same connector, 3.13.1), is replaced.
        kept = tuple(
            e
            for e in self.entries
            if e.profile.profile_id != profile.profile_id
            and not (
                e.connector_id == connector_id
                and e.profile.purpose is purpose
                and e.profile.stack_level == profile.stack_level
            )
        )
        if len(kept) + 1 > self.max_profiles:
            raise ProfileRejectedError(
                f"{name} rejected: MaxChargingProfilesInstalled ({self.max_profiles}) reached"
            )
        return replace(self, entries=(*kept, InstalledProfile(connector_id, profile)))

    def clear(
        self,
        id: int | None = None,  # the field name of ClearChargingProfile.req
        connector_id: int | None = None,
        purpose: ChargingProfilePurpose | None = None,
        stack_level: int | None = None,
    ) -> tuple[ProfileStore, bool]:
        """ClearChargingProfile.req: return the new store and whether anything was cleared
        (conf status Accepted) or not (Unknown). No criteria at all clears every profile."""

        def matches(entry: InstalledProfile) -> bool:
            if id is not None:
                return entry.profile.profile_id == id
            return (
                (connector_id is None or entry.connector_id == connector_id)
                and (purpose is None or entry.profile.purpose is purpose)
                and (stack_level is None or entry.profile.stack_level == stack_level)
            )

        kept = tuple(e for e in self.entries if not matches(e))
        if len(kept) == len(self.entries):
            return self, False
        return replace(self, entries=kept), True

    def end_transaction(self, connector_id: int) -> ProfileStore:
        """Drop the TxProfiles of the transaction that stopped on `connector_id` (7.10)."""
        kept = tuple(
            e
            for e in self.entries
            if not (
                e.connector_id == connector_id
                and e.profile.purpose is ChargingProfilePurpose.TxProfile
            )
        )
        return self if len(kept) == len(self.entries) else replace(self, entries=kept)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form; each profile is stored as a SetChargingProfile.req payload."""
        return {
            "format": _STORE_FORMAT,
            "max_stack_level": self.max_stack_level,
            "max_profiles": self.max_profiles,
            "max_periods": self.max_periods,
            "allowed_rate_units": sorted(u.value for u in self.allowed_rate_units),
            "connector_count": self.connector_count,
            "profiles": [
                {"connectorId": e.connector_id, "csChargingProfiles": profile_to_ocpp(e.profile)}
                for e in self.entries
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProfileStore:
        """Inverse of to_dict (e.g. after a simulated reboot, spec 3.13: profiles persist)."""
        if d.get("format") != _STORE_FORMAT:
            raise ProfileError(f"format must be {_STORE_FORMAT!r}, got {d.get('format')!r}")
        entries = []
        for index, item in enumerate(d.get("profiles", [])):
            path = f"profiles[{index}]"
            if not isinstance(item, Mapping):
                raise ProfileError(f"{path} must be an object")
            connector = _int(item.get("connectorId"), f"{path}.connectorId")
            try:
                profile = profile_from_ocpp(item.get("csChargingProfiles", {}))
            except ProfileError as exc:
                raise ProfileError(f"{path}: {exc}") from None
            entries.append(InstalledProfile(connector, profile))
        count = d.get("connector_count")
        return cls(
            entries=tuple(entries),
            max_stack_level=_int(d.get("max_stack_level"), "max_stack_level"),
            max_profiles=_int(d.get("max_profiles"), "max_profiles"),
            max_periods=_int(d.get("max_periods"), "max_periods"),
            allowed_rate_units=frozenset(
                _enum(ChargingRateUnit, u, "allowed_rate_units")
                for u in d.get("allowed_rate_units", [])
            ),
            connector_count=None if count is None else _int(count, "connector_count"),
        )


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidates:
    """Profiles that can limit one connector, each list ordered by precedence."""

    max_profiles: tuple[ChargingProfile, ...]
    tx_profiles: tuple[ChargingProfile, ...]
    default_profiles: tuple[ChargingProfile, ...]

    def all(self) -> Iterator[ChargingProfile]:
        yield from self.max_profiles
        yield from self.tx_profiles
        yield from self.default_profiles


def _candidates(
    store: ProfileStore, connector_id: int, transaction_id: int | None, tx_running: bool
) -> _Candidates:
    if connector_id < 0:
        raise ProfileError(f"connectorId must be >= 0, got {connector_id}")

    def ranked(
        purpose: ChargingProfilePurpose, connectors: set[int]
    ) -> tuple[ChargingProfile, ...]:
        chosen = [
            e
            for e in store.entries
            if e.profile.purpose is purpose and e.connector_id in connectors
        ]
        # Highest stack level first; at equal level the connector's own before connector 0's.
        chosen.sort(key=lambda e: (-e.profile.stack_level, e.connector_id == 0))
        return tuple(e.profile for e in chosen)

    cp_max = ranked(ChargingProfilePurpose.ChargePointMaxProfile, {0})
    if connector_id == 0:
        # Connector 0 is the grid connection: only the charge point's own cap applies.
        return _Candidates(cp_max, (), ())
    tx: tuple[ChargingProfile, ...] = ()
    if tx_running:
        tx = tuple(
            p
            for p in ranked(ChargingProfilePurpose.TxProfile, {connector_id})
            if p.transaction_id is None or p.transaction_id == transaction_id
        )
    defaults = ranked(ChargingProfilePurpose.TxDefaultProfile, {0, connector_id})
    return _Candidates(cp_max, tx, defaults)


def _schedule_base(profile: ChargingProfile, relative_start: datetime) -> datetime:
    start = profile.schedule.start_schedule
    if profile.kind is ChargingProfileKind.Relative or start is None:
        return relative_start
    return start


def _active_period(
    profile: ChargingProfile, at: datetime, relative_start: datetime
) -> ChargingSchedulePeriod | None:
    """The period of `profile` in force at `at`, or None if the profile does not apply."""
    if profile.valid_from is not None and at < profile.valid_from:
        return None
    if profile.valid_to is not None and at >= profile.valid_to:
        return None
    schedule = profile.schedule
    elapsed = at - _schedule_base(profile, relative_start)
    if elapsed < timedelta(0):
        return None
    if profile.recurrency_kind is not None:
        # The remainder beyond one recurrence is never executed (errata 3.44).
        elapsed %= _RECURRENCE[profile.recurrency_kind.value]
    if schedule.duration_s is not None and elapsed >= timedelta(seconds=schedule.duration_s):
        return None
    found = None
    for period in schedule.periods:
        if timedelta(seconds=period.start_period_s) > elapsed:
            break
        found = period
    return found


def _first_applying(
    profiles: Iterable[ChargingProfile], at: datetime, relative_start: datetime
) -> tuple[ChargingProfile, ChargingSchedulePeriod] | None:
    for profile in profiles:
        period = _active_period(profile, at, relative_start)
        if period is not None:
            return profile, period
    return None


def _combine(
    hits: Sequence[tuple[ChargingProfile, ChargingSchedulePeriod]],
    voltage_v: float,
    default_phases: int,
) -> Limit | None:
    if not hits:
        return None
    phases = min(period.number_phases or default_phases for _, period in hits)
    per_phase = voltage_v * phases

    def amps(profile: ChargingProfile, value: float) -> float:
        return value if profile.schedule.rate_unit is ChargingRateUnit.A else value / per_phase

    profile, period = min(hits, key=lambda hit: amps(hit[0], hit[1].limit))
    # Take both numbers from the binding profile's own unit, so that unit stays exact.
    if profile.schedule.rate_unit is ChargingRateUnit.A:
        current_a, power_w = period.limit, period.limit * per_phase
    else:
        current_a, power_w = period.limit / per_phase, period.limit
    minimums = [
        amps(p, p.schedule.min_charging_rate)
        for p, _ in hits
        if p.schedule.min_charging_rate is not None
    ]
    return Limit(
        current_a=current_a,
        power_w=power_w,
        number_phases=phases,
        profile_ids=tuple(p.profile_id for p, _ in hits),
        min_current_a=max(minimums) if minimums else None,
    )


def _evaluate(
    candidates: _Candidates,
    at: datetime,
    relative_start: datetime,
    voltage_v: float,
    default_phases: int,
) -> Limit | None:
    hits = []
    cp_max = _first_applying(candidates.max_profiles, at, relative_start)
    if cp_max is not None:
        hits.append(cp_max)
    # A TxProfile that applies overrules the TxDefaultProfile (3.13.1).
    tx = _first_applying(candidates.tx_profiles, at, relative_start) or _first_applying(
        candidates.default_profiles, at, relative_start
    )
    if tx is not None:
        hits.append(tx)
    return _combine(hits, voltage_v, default_phases)


def _check_electrics(voltage_v: float, default_phases: int) -> None:
    if not voltage_v > 0:
        raise ProfileError(f"voltage_v must be > 0, got {voltage_v}")
    if default_phases not in (1, 2, 3):
        raise ProfileError(f"default_phases must be 1, 2 or 3, got {default_phases}")


def limit_at(
    store: ProfileStore,
    connector_id: int,
    at: datetime,
    *,
    transaction_id: int | None,
    transaction_start: datetime | None,
    voltage_v: float = DEFAULT_VOLTAGE_V,
    default_phases: int = DEFAULT_PHASES,
) -> Limit | None:
    """What `connector_id` may draw at `at`; None when no profile limits it.

    A transaction is running when `transaction_id` or `transaction_start` is given (the id
    may still be unknown right after a remote start). Relative schedules run from
    `transaction_start`, or from `at` when there is none. Connector 0 gives the charge
    point's own cap (ChargePointMaxProfile).
    """
    _require_aware(at, "at")
    _require_aware(transaction_start, "transaction_start")
    _check_electrics(voltage_v, default_phases)
    running = transaction_id is not None or transaction_start is not None
    candidates = _candidates(store, connector_id, transaction_id, running)
    return _evaluate(candidates, at, transaction_start or at, voltage_v, default_phases)


def _change_points(
    profile: ChargingProfile, relative_start: datetime, start: datetime, end: datetime
) -> Iterator[datetime]:
    """Every instant in (start, end) at which `profile`'s own contribution may change."""
    if profile.valid_from is not None:
        yield profile.valid_from
    if profile.valid_to is not None:
        yield profile.valid_to
    schedule = profile.schedule
    base = _schedule_base(profile, relative_start)
    offsets = [timedelta(seconds=p.start_period_s) for p in schedule.periods]
    if schedule.duration_s is not None:
        offsets.append(timedelta(seconds=schedule.duration_s))
    if profile.recurrency_kind is None:
        yield from (base + offset for offset in offsets)
        return
    cycle = _RECURRENCE[profile.recurrency_kind.value]
    offsets = [offset for offset in offsets if offset < cycle]
    first = max(0, (start - base) // cycle)
    last = max(0, (end - base) // cycle)
    for k in range(first, last + 1):
        yield from (base + k * cycle + offset for offset in offsets)


def limit_timeline(
    store: ProfileStore,
    connector_id: int,
    start: datetime,
    duration_s: int,
    *,
    transaction_id: int | None,
    transaction_start: datetime | None,
    voltage_v: float = DEFAULT_VOLTAGE_V,
    default_phases: int = DEFAULT_PHASES,
) -> tuple[LimitChange, ...]:
    """The limit of `connector_id` over [start, start + duration_s), one entry per change.

    The first entry is at `start`. Without a transaction, Relative schedules run from
    `start` (a car plugging in then). None means no profile limits the connector.
    """
    _require_aware(start, "start")
    _require_aware(transaction_start, "transaction_start")
    _check_electrics(voltage_v, default_phases)
    if duration_s <= 0:
        raise ProfileError(f"duration must be > 0 seconds, got {duration_s}")
    end = start + timedelta(seconds=duration_s)
    running = transaction_id is not None or transaction_start is not None
    candidates = _candidates(store, connector_id, transaction_id, running)
    relative_start = transaction_start or start
    instants = {start}
    for profile in candidates.all():
        instants.update(
            t for t in _change_points(profile, relative_start, start, end) if start < t < end
        )
    changes: list[LimitChange] = []
    for at in sorted(instants):
        limit = _evaluate(candidates, at, relative_start, voltage_v, default_phases)
        if not changes or changes[-1].limit != limit:
            changes.append(LimitChange(at, limit))
    return tuple(changes)


def composite_schedule(
    store: ProfileStore,
    connector_id: int,
    start: datetime,
    duration_s: int,
    rate_unit: ChargingRateUnit,
    *,
    transaction_id: int | None,
    transaction_start: datetime | None,
    voltage_v: float = DEFAULT_VOLTAGE_V,
    default_phases: int = DEFAULT_PHASES,
    unlimited_a: float = DEFAULT_UNLIMITED_A,
) -> ChargingSchedule:
    """The composite schedule (GetCompositeSchedule, spec 5.7) from `start` on.

    Periods only where the limit changes; limits rounded down to 0.1 in `rate_unit`.
    Where no profile applies the schedule reports `unlimited_a` (converted with
    `default_phases`), since OCPP cannot express "no limit": pass the charger's own
    maximum. `min_charging_rate` is the largest minChargingRate among the combined
    profiles. `start_schedule` is `start`; see composite_to_ocpp for the message form.
    """
    changes = limit_timeline(
        store,
        connector_id,
        start,
        duration_s,
        transaction_id=transaction_id,
        transaction_start=transaction_start,
        voltage_v=voltage_v,
        default_phases=default_phases,
    )
    raw: list[ChargingSchedulePeriod] = []
    minimums: list[float] = []
    for change in changes:
        # startPeriod is whole seconds; a change inside a second is reported from its start.
        offset = math.floor((change.at - start).total_seconds())
        limit = change.limit
        if limit is None:
            unlimited = unlimited_a
            if rate_unit is ChargingRateUnit.W:
                unlimited *= voltage_v * default_phases
            period = ChargingSchedulePeriod(offset, _floor_tenth(unlimited))
        else:
            period = ChargingSchedulePeriod(
                offset, _floor_tenth(limit.in_unit(rate_unit)), limit.number_phases
            )
            if limit.min_current_a is not None:
                factor = 1.0 if rate_unit is ChargingRateUnit.A else voltage_v * limit.number_phases
                minimums.append(limit.min_current_a * factor)
        if raw and raw[-1].start_period_s == offset:
            # Two changes within one second: keep the lower (safe) one for that second.
            if period.limit < raw[-1].limit:
                raw[-1] = period
        else:
            raw.append(period)
    periods: list[ChargingSchedulePeriod] = []
    for period in raw:
        # Rounding can make neighbours equal: a period only where the limit changes.
        if not periods or (periods[-1].limit, periods[-1].number_phases) != (
            period.limit,
            period.number_phases,
        ):
            periods.append(period)
    return ChargingSchedule(
        rate_unit=rate_unit,
        periods=tuple(periods),
        duration_s=duration_s,
        start_schedule=start,
        min_charging_rate=round(max(minimums), 1) if minimums else None,
    )


# --------------------------------------------------------------------------------------
# Profiles the CSMS sends
# --------------------------------------------------------------------------------------


def _single_period_schedule(
    purpose: ChargingProfilePurpose,
    limit_a: float,
    number_phases: int | None,
    rate_unit: ChargingRateUnit,
    voltage_v: float,
    start: datetime | None,
) -> ChargingSchedule:
    if not math.isfinite(limit_a) or limit_a < 0:
        raise ProfileError(f"limit_a must be a finite number >= 0, got {limit_a!r}")
    if purpose is not ChargingProfilePurpose.ChargePointMaxProfile and (
        0 < limit_a < MIN_CHARGING_CURRENT_A
    ):
        raise ProfileError(
            f"limit_a {limit_a} A cannot be signalled to a car: IEC 61851-1 allows 0 or "
            f">= {MIN_CHARGING_CURRENT_A} A"
        )
    _check_electrics(voltage_v, number_phases or DEFAULT_PHASES)
    amps = _floor_tenth(limit_a)
    if rate_unit is ChargingRateUnit.W:
        limit = _floor_tenth(amps * voltage_v * (number_phases or DEFAULT_PHASES))
    else:
        limit = amps
    return ChargingSchedule(
        rate_unit=rate_unit,
        periods=(ChargingSchedulePeriod(0, limit, number_phases),),
        start_schedule=start,
    )


def tx_profile(
    profile_id: int,
    stack_level: int,
    transaction_id: int | None,
    limit_a: float,
    number_phases: int | None = None,
    rate_unit: ChargingRateUnit = ChargingRateUnit.A,
    voltage_v: float = DEFAULT_VOLTAGE_V,
    start: datetime | None = None,
) -> ChargingProfile:
    """A one-period TxProfile holding `limit_a` per phase from now on.

    Relative when `start` is None (runs from the transaction start), else Absolute from
    `start`. For a W-only charger (`rate_unit` W) the limit becomes A x V x phases.
    `transaction_id` None is for RemoteStartTransaction (spec 5.16.2).
    """
    schedule = _single_period_schedule(
        ChargingProfilePurpose.TxProfile, limit_a, number_phases, rate_unit, voltage_v, start
    )
    return ChargingProfile(
        profile_id=profile_id,
        stack_level=stack_level,
        purpose=ChargingProfilePurpose.TxProfile,
        kind=ChargingProfileKind.Relative if start is None else ChargingProfileKind.Absolute,
        schedule=schedule,
        transaction_id=transaction_id,
    )


def default_profile(
    purpose: ChargingProfilePurpose,
    limit_a: float,
    *,
    profile_id: int,
    stack_level: int = 0,
    number_phases: int | None = None,
    rate_unit: ChargingRateUnit = ChargingRateUnit.A,
    voltage_v: float = DEFAULT_VOLTAGE_V,
    start: datetime | None = None,
) -> ChargingProfile:
    """The conservative ChargePointMaxProfile or TxDefaultProfile sent at boot.

    One period without duration, so it holds until replaced, also while the CSMS is down
    (field notes: the only protection of the fuse then). Relative when `start` is None,
    else Absolute from `start` (some chargers reject Relative ChargePointMaxProfiles).
    """
    if purpose is ChargingProfilePurpose.TxProfile:
        raise ProfileError(
            "default_profile builds ChargePointMaxProfile or TxDefaultProfile; use tx_profile"
        )
    schedule = _single_period_schedule(purpose, limit_a, number_phases, rate_unit, voltage_v, start)
    return ChargingProfile(
        profile_id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=ChargingProfileKind.Relative if start is None else ChargingProfileKind.Absolute,
        schedule=schedule,
    )
