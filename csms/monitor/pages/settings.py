"""Settings: the site's fuse, margin, strategy, tick, default departure and price.

Every value goes through `csms.settings.validate_site_update`, the same rules as
``csms site set``: one bad value refuses the whole form with a message naming it, and
nothing is written. The controller picks the new values up on its next tick.

Only a manager gets the form (and `csms.monitor.writes.update_site` checks again and
records the change in the audit log); a viewer reads the same values as a table.

On PostgreSQL, where several `csms serve` may share the database, the page also says
which instance runs the site's controller (or that none does right now), and an account
of every site sees each live instance with the sites it leads and the chargers it holds:
what `csms cluster status` prints.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from sqlalchemy.engine import make_url

from csms.auth import Account, Permission
from csms.domain import SiteConfig
from csms.errors import ConfigError, GarageGridError
from csms.monitor import access, ui, writes
from csms.scheduler import LIVE_STRATEGIES
from csms.store import queries
from csms.store.engine import is_sqlite

# Only the strategies that may control real chargers: ``thesis`` ignores the fuse and is a
# benchmark baseline of `csms simulate` / `csms bench` only (validate_site_update refuses it).
STRATEGY_HELP = {
    "equal": "an equal share for every car",
    "edf": "earliest departure first",
    "llf": "least laxity first: the car with the least slack first",
    "optimal": "an optimisation over all cars (linear program)",
}


def apply_site_changes(
    account: Account, current: SiteConfig, changes: dict[str, Any]
) -> SiteConfig:
    """Validate, then write only what changed; ConfigError (and no write) on a bad value,
    AccessDeniedError for anyone but a manager."""
    return writes.update_site(account, current, changes)


def render() -> None:
    account = access.page_account("settings")
    st.title("Settings")
    with ui.error_box():
        _render(account, access.page_site(account))


def _read_only(site: SiteConfig) -> None:
    price = (
        f"{site.price_per_kwh:g} {site.currency}/kWh" if site.price_per_kwh > 0 else "no price set"
    )
    rows = [
        ("Fuse limit per phase", f"{site.fuse_limit_a:g} A"),
        ("Safety margin", f"{site.margin_a:g} A"),
        ("Strategy", f"{site.strategy} — {STRATEGY_HELP.get(site.strategy, '')}"),
        ("Tick", f"{site.tick_s:g} s"),
        ("Default departure", site.default_departure),
        ("Default energy", f"{site.default_energy_kwh:g} kWh"),
        ("Price", price),
        ("Time zone", site.timezone),
    ]
    # A list, not a table: it wraps on a phone.
    st.markdown("\n".join(f"- **{name}**: {value}" for name, value in rows))
    st.caption("Read-only account: settings are changed by a manager.")


def _render(account: Account, view: ui.SiteView) -> None:
    site = view.settings()
    if view.several:
        st.caption(f"Site **{site.name}**: its own fuse, controller and settings.")
    if not account.may(Permission.write_garage):
        _read_only(site)
        _building_load(site)
        _control(account, site)
        return
    with st.form("site_settings"):
        st.markdown("**Main fuse**")
        c1, c2, c3 = st.columns(3)
        fuse = c1.number_input(
            "Fuse limit per phase (A)", value=float(site.fuse_limit_a), step=1.0, key="set_fuse"
        )
        margin = c2.number_input(
            "Safety margin (A)",
            value=float(site.margin_a),
            step=0.5,
            key="set_margin",
            help="Kept free under the fuse on every phase.",
        )
        strategies = list(LIVE_STRATEGIES)
        # A site still set to a strategy that may no longer run live (thesis, chosen before
        # it was refused) shows llf, the default, until the form is saved; the warning
        # below says so.
        strategy = c3.selectbox(
            "Strategy",
            strategies,
            index=strategies.index(site.strategy if site.strategy in strategies else "llf"),
            format_func=lambda s: f"{s} — {STRATEGY_HELP.get(s, '')}",
            key="set_strategy",
        )
        st.markdown("**Controller and residents**")
        c4, c5, c6 = st.columns(3)
        tick = c4.number_input(
            "Tick (s)",
            value=float(site.tick_s),
            step=1.0,
            key="set_tick",
            help="How often the controller re-plans.",
        )
        departure = c5.text_input(
            "Default departure (HH:MM)",
            value=site.default_departure,
            key="set_departure",
            help="When a resident has not said when they leave.",
        )
        energy = c6.number_input(
            "Default energy (kWh)",
            value=float(site.default_energy_kwh),
            step=1.0,
            key="set_energy",
            help="When a resident has not said how much they need.",
        )
        st.markdown("**Billing and display**")
        c7, c8, c9 = st.columns(3)
        price = c7.number_input(
            "Price per kWh",
            value=float(site.price_per_kwh),
            step=0.1,
            key="set_price",
            help="0: no price set (the Sessions page then shows energy without a cost).",
        )
        currency = c8.text_input("Currency", value=site.currency, key="set_currency")
        timezone = c9.text_input("Time zone", value=site.timezone, key="set_timezone")
        submitted = st.form_submit_button("Save settings", type="primary", key="settings_save")
    if site.strategy not in strategies:
        st.warning(
            f"The site's strategy {site.strategy!r} may not control real chargers; "
            f"choose one of {', '.join(strategies)} and save.",
            icon=":material/warning:",
        )
    if submitted:
        changes = {
            "fuse_limit_a": fuse,
            "margin_a": margin,
            "strategy": strategy,
            "tick_s": tick,
            "default_departure": departure.strip(),
            "default_energy_kwh": energy,
            "price_per_kwh": price,
            "currency": currency.strip(),
            "timezone": timezone.strip(),
        }
        try:
            saved = apply_site_changes(account, site, changes)
        except ConfigError as exc:
            st.error(f"Not saved: {exc}", icon=":material/block:")
        else:
            st.success(
                f"Saved. EVs may now take {saved.fuse_limit_a - saved.margin_a:g} A per phase "
                "minus the building load; the controller applies it on its next tick.",
                icon=":material/check:",
            )
    _building_load(site)
    _control(account, site)


def _control(account: Account, site: SiteConfig) -> None:
    """Which instance runs the site's controller (PostgreSQL only: on SQLite one
    `csms serve` is the whole system)."""
    store = ui.store()
    if is_sqlite(store.url):
        return
    # PostgreSQL only: a SQLite install never loads these.
    import asyncpg

    from csms.cluster import cluster_status

    try:
        status = ui.run(cluster_status(make_url(store.url), store.repo))
    except (GarageGridError, OSError, TimeoutError, asyncpg.PostgresError) as exc:
        st.caption(f"Which instance controls the site is not known now ({exc}).")
        return
    instances = status["instances"]
    leader = next((i for i in instances if site.name in i["leads"]), None)
    if leader is not None:
        st.caption(
            f"Load management: instance `{leader['instance']}` runs this site's controller "
            f"({len(instances)} instance{'s' if len(instances) != 1 else ''} on this database)."
        )
    elif instances:
        st.warning(
            "No instance runs this site's controller right now: its chargers keep the "
            "fail-safe profiles they hold, and a running instance takes the site over "
            "within seconds.",
            icon=":material/warning:",
        )
    else:
        # A lone `csms serve --no-cluster` takes no lease: it may run all the same.
        st.caption(
            "Load management: no clustered `csms serve` instance is on this database (a "
            "lone instance started with `--no-cluster` is not listed here)."
        )
    if account.site_id is None and instances:
        with st.expander("Instances"):
            st.dataframe(
                [
                    {
                        "Instance": i["instance"],
                        "Leads": ", ".join(i["leads"]) or "-",
                        "Chargers held": i["chargers"],
                    }
                    for i in instances
                ],
                hide_index=True,
            )
            if status["sites_without_leader"]:
                st.caption("Sites nobody leads now: " + ", ".join(status["sites_without_leader"]))


def _building_load(site: SiteConfig) -> None:
    latest = ui.run(queries.latest_building_load(ui.store().sessionmaker, site_id=site.site_id))
    if latest is None:
        st.caption("No building-load reading yet (`csms site load L1 L2 L3` records one).")
    else:
        st.caption(
            f"Building load {ui.fmt_time(latest.measured_at, site.timezone)}: "
            f"L1 {latest.l1_a:g} A, L2 {latest.l2_a:g} A, L3 {latest.l3_a:g} A."
        )


if __name__ == "__main__":
    render()
