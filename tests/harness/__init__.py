"""A live verification harness: the real Controller and the real store against model chargers.

- `tests.harness.chargers`: a manual clock, model chargers that obey OCPP 1.6 section 3.13
  exactly (they keep a `csms.profiles.ProfileStore` and answer SetChargingProfile and
  ClearChargingProfile the way the spec says), the cars on them, and `Garage`, which checks
  the fuse from what the chargers actually installed, independently of the controller.
- `tests.harness.central`: a fake `CentralSystem` (`call`, `add_call_observer`,
  `boot_gate`) that delivers each call to its model charger and checks the fuse right
  after each single profile was applied or refused, and `CsmsUnderTest`: the real
  Repository on a SQLite file, the real EventBus and the real Controller, wired as
  `csms/app.py` wires them, with the store writes and events of `csms/ocpp16/handlers.py`.

The seam with the controller is small on purpose: `Controller(repository, central, events,
clock)`, `await controller.plan_once()`, and each published event handed to
`controller._on_event` as `_consume_events` does. `tests/test_live_harness.py` drives it
with a hypothesis state machine.
"""
