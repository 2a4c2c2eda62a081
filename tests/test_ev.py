"""The EV model: catalogue, IEC 61851 minimum, taper, SoC integration."""

from __future__ import annotations

import itertools
import math

import pytest

from csms.errors import ConfigError
from csms.ev import (
    CATALOGUE,
    MIN_CURRENT_A,
    TAPER_END_A,
    TAPER_START_SOC,
    EVSpec,
    charge,
    draw_current_a,
    ev_from_json,
    ev_to_json,
    max_current_at_soc,
    time_to_full_s,
)

ZOE = CATALOGUE["renault-zoe-22"]
LEAF = CATALOGUE["nissan-leaf-40"]
TESLA = CATALOGUE["tesla-model-3-lr"]


def test_catalogue_has_at_least_twelve_models_with_sane_ac_figures() -> None:
    assert len(CATALOGUE) >= 12
    for key, spec in CATALOGUE.items():
        assert spec.key == key
        assert key == key.lower() and " " not in key
        assert 5 <= spec.battery_kwh <= 120, key
        assert MIN_CURRENT_A <= spec.max_current_a <= 63, key
        assert spec.phases in (1, 3), key
        assert spec.max_power_w <= 43_500, key  # no AC charger above 43 kW
    assert {spec.phases for spec in CATALOGUE.values()} == {1, 3}


@pytest.mark.parametrize(
    ("key", "battery_kwh", "max_current_a", "phases"),
    [
        ("renault-zoe-22", 22.0, 32.0, 3),  # the thesis's car, 22 kW Chameleon charger
        ("renault-zoe-22-q210", 22.0, 63.0, 3),  # 43 kW Chameleon charger
        ("nissan-leaf-40", 39.0, 29.0, 1),  # 6.6 kW one-phase
        ("tesla-model-3-lr", 75.0, 16.0, 3),  # 11 kW
        ("vw-id3-58", 58.0, 16.0, 3),
        ("hyundai-kona-64-2019", 64.0, 32.0, 1),  # 7.2 kW one-phase
        ("mitsubishi-outlander-phev", 10.0, 16.0, 1),  # 3.7 kW one-phase
    ],
)
def test_catalogue_figures_of_well_known_models(
    key: str, battery_kwh: float, max_current_a: float, phases: int
) -> None:
    spec = CATALOGUE[key]
    assert (spec.battery_kwh, spec.max_current_a, spec.phases) == (
        battery_kwh,
        max_current_a,
        phases,
    )


@pytest.mark.parametrize(
    ("spec", "soc", "offered_a", "expected_a"),
    [
        (ZOE, 0.5, 5.9, 0.0),  # IEC 61851-1: below 6 A means pause
        (ZOE, 0.5, 0.0, 0.0),
        (ZOE, 0.5, -3.0, 0.0),
        (ZOE, 0.5, 6.0, 6.0),
        (ZOE, 0.5, 16.0, 16.0),
        (ZOE, 0.5, 63.0, 32.0),  # onboard charger limit
        (LEAF, 0.2, 32.0, 29.0),
        (TESLA, 0.8, 32.0, 16.0),  # taper starts above 80 %
        (ZOE, 1.0, 32.0, 0.0),  # full
    ],
)
def test_draw_current_is_min_of_offer_charger_and_taper(
    spec: EVSpec, soc: float, offered_a: float, expected_a: float
) -> None:
    assert draw_current_a(spec, soc, offered_a) == pytest.approx(expected_a)


def test_taper_is_flat_to_80_percent_then_falls_to_a_few_amperes_and_zero_when_full() -> None:
    socs = [0.0, 0.5, TAPER_START_SOC, 0.85, 0.9, 0.95, 0.99, 0.999]
    currents = [max_current_at_soc(ZOE, soc) for soc in socs]
    assert currents[:3] == [32.0, 32.0, 32.0]
    assert all(a > b for a, b in itertools.pairwise(currents[2:]))
    assert TAPER_END_A < currents[-1] < TAPER_END_A + 0.2
    assert max_current_at_soc(ZOE, 1.0) == 0.0


def test_tapering_car_draws_less_than_six_amperes_when_offered_more() -> None:
    assert 0 < draw_current_a(ZOE, 0.99, 32.0) < MIN_CURRENT_A


@pytest.mark.parametrize(
    ("spec", "current_a", "voltage_v"),
    [(ZOE, 16.0, 230.0), (ZOE, 32.0, 230.0), (LEAF, 29.0, 230.0), (TESLA, 10.0, 208.0)],
)
def test_energy_is_current_times_voltage_times_phases_times_hours(
    spec: EVSpec, current_a: float, voltage_v: float
) -> None:
    soc, energy_wh = charge(spec, 0.2, current_a, 1800, voltage_v)
    assert energy_wh == pytest.approx(current_a * voltage_v * spec.phases * 0.5)
    assert (soc - 0.2) * spec.battery_kwh * 1000 == pytest.approx(energy_wh)


def test_charge_never_goes_above_full_and_stops_drawing() -> None:
    soc, energy_wh = charge(ZOE, 0.3, 32.0, 10 * 86_400)
    assert soc == 1.0
    assert energy_wh == pytest.approx(0.7 * 22_000)
    assert charge(ZOE, 1.0, 32.0, 3600) == (1.0, 0.0)


def test_one_long_step_equals_many_short_steps_through_the_taper() -> None:
    soc, total_wh = 0.7, 0.0
    for _ in range(360):
        soc, energy_wh = charge(TESLA, soc, 16.0, 10)
        total_wh += energy_wh
    assert (soc, total_wh) == pytest.approx(charge(TESLA, 0.7, 16.0, 3600))


def test_charger_losses_make_soc_rise_less_than_grid_energy() -> None:
    soc, energy_wh = charge(ZOE, 0.2, 16.0, 3600, efficiency=0.9)
    assert energy_wh == pytest.approx(16 * 230 * 3)
    assert (soc - 0.2) * 22_000 == pytest.approx(0.9 * energy_wh)


def test_three_phase_car_on_one_phase_station_draws_on_one_phase() -> None:
    _, three_wh = charge(TESLA, 0.2, 16.0, 3600)
    _, one_wh = charge(TESLA, 0.2, 16.0, 3600, phases=1)
    assert one_wh == pytest.approx(three_wh / 3)


@pytest.mark.parametrize(
    ("soc", "target", "current_a"),
    [(0.2, 0.8, 16.0), (0.2, 0.9, 32.0), (0.85, 1.0, 10.0), (0.0, 1.0, 6.0), (0.95, 0.97, 32.0)],
)
def test_time_to_full_is_the_inverse_of_charge(soc: float, target: float, current_a: float) -> None:
    seconds = time_to_full_s(ZOE, soc, target, current_a)
    assert charge(ZOE, soc, current_a, seconds)[0] == pytest.approx(target)
    assert charge(ZOE, soc, current_a, seconds * 0.99)[0] < target


def test_time_to_full_below_the_taper_is_energy_over_power() -> None:
    # Zoe 20 % -> 80 %: 13.2 kWh at 3x16 A x 230 V = 11 kW, 1.2 h.
    assert time_to_full_s(ZOE, 0.2, 0.8, 16.0) == pytest.approx(13_200 / (16 * 230 * 3) * 3600)


@pytest.mark.parametrize(("current_a", "expected"), [(5.0, math.inf), (0.0, math.inf)])
def test_time_to_full_is_infinite_below_minimum_current(current_a: float, expected: float) -> None:
    assert time_to_full_s(ZOE, 0.2, 0.8, current_a) == expected


def test_time_to_full_is_zero_when_already_there() -> None:
    assert time_to_full_s(ZOE, 0.9, 0.8, 16.0) == 0.0


def test_ev_from_json_reads_catalogue_key_and_manual_entry() -> None:
    assert ev_from_json("renault-zoe-22") is ZOE
    custom = ev_from_json({"battery_kwh": 64, "max_current_a": 16, "phases": 3})
    assert (custom.key, custom.battery_kwh, custom.max_current_a, custom.phases) == (
        "custom",
        64.0,
        16.0,
        3,
    )
    assert "64 kWh" in custom.name


@pytest.mark.parametrize("spec", [ZOE, EVSpec("my-van", "My van", 70.0, 16.0, 1)])
def test_ev_to_json_round_trips(spec: EVSpec) -> None:
    assert ev_from_json(ev_to_json(spec)) == spec


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("renault-zoe-99", "ev: unknown EV model 'renault-zoe-99'"),
        ({"battery_kwh": -1, "max_current_a": 16, "phases": 3}, "ev.battery_kwh"),
        ({"battery_kwh": "big", "max_current_a": 16, "phases": 3}, "ev.battery_kwh"),
        ({"max_current_a": 16, "phases": 3}, "ev.battery_kwh: required"),
        ({"battery_kwh": 50, "max_current_a": 3, "phases": 3}, "ev.max_current_a"),
        ({"battery_kwh": 50, "max_current_a": 16, "phases": 2}, "ev.phases: must be 1 or 3"),
        ({"battery_kwh": 50, "max_current_a": 16, "phases": True}, "ev.phases"),
        ({"battery_kwh": 50, "max_current_a": 16, "phases": 3, "kw": 11}, "ev.kw: unknown"),
        ({"battery_kwh": 50, "max_current_a": 16, "phases": 3, "name": ""}, "ev.name"),
    ],
)
def test_ev_from_json_rejects_bad_input_naming_the_field(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        ev_from_json(value)  # type: ignore[arg-type]


def test_ev_from_json_rejects_a_number() -> None:
    with pytest.raises(ConfigError, match="ev: expected a catalogue key"):
        ev_from_json(42)  # type: ignore[arg-type]
