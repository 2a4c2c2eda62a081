"""The monitor's pages. Each module renders itself when Streamlit runs it as a page script.

A page is a file (not a callable) so that its URL is its name (``/history``) and
``AppTest.switch_page`` can open it in tests. ``roles`` says who may open it: a page is
in an account's navigation only if its role is listed, and the page itself refuses to
render for anyone else (`csms.monitor.access.page_account`), however it was reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from csms.auth import Role

PAGE_DIR = Path(__file__).resolve().parent

EVERYONE = frozenset(Role)
GARAGE = frozenset({Role.manager, Role.viewer})


@dataclass(frozen=True)
class PageSpec:
    name: str
    title: str
    icon: str
    roles: frozenset[Role]
    # The title a resident sees, where it differs ("My car" rather than "Resident").
    resident_title: str | None = None

    @property
    def path(self) -> Path:
        return PAGE_DIR / f"{self.name}.py"

    def title_for(self, role: Role) -> str:
        return self.resident_title if role is Role.resident and self.resident_title else self.title


PAGES = (
    PageSpec("live", "Live", ":material/bolt:", GARAGE),
    PageSpec("history", "History", ":material/history:", GARAGE),
    PageSpec("stations", "Stations", ":material/ev_station:", GARAGE),
    PageSpec("sessions", "Sessions & energy", ":material/receipt_long:", EVERYONE, "My sessions"),
    PageSpec("resident", "Resident", ":material/directions_car:", EVERYONE, "My car"),
    PageSpec("settings", "Settings", ":material/settings:", GARAGE),
    PageSpec("audit", "Audit", ":material/policy:", frozenset({Role.manager})),
    PageSpec("account", "Account", ":material/person:", EVERYONE),
)
PAGE_NAMES = frozenset(p.name for p in PAGES)


def pages_for(role: Role) -> list[PageSpec]:
    return [p for p in PAGES if role in p.roles]


def may_open(role: Role, page: str) -> bool:
    return any(p.name == page and role in p.roles for p in PAGES)


def default_page(role: Role) -> str:
    """Where an account lands: a resident on their car, everyone else on Live."""
    return "resident" if role is Role.resident else "live"
