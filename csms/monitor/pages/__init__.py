"""The monitor's pages. Each module renders itself when Streamlit runs it as a page script.

A page is a file (not a callable) so that its URL is its name (``/history``) and
``AppTest.switch_page`` can open it in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PageSpec:
    name: str
    title: str
    icon: str
    default: bool = False

    @property
    def path(self) -> Path:
        return PAGE_DIR / f"{self.name}.py"


PAGES = (
    PageSpec("live", "Live", ":material/bolt:", default=True),
    PageSpec("history", "History", ":material/history:"),
    PageSpec("stations", "Stations", ":material/ev_station:"),
    PageSpec("sessions", "Sessions & energy", ":material/receipt_long:"),
    PageSpec("resident", "Resident", ":material/person:"),
    PageSpec("settings", "Settings", ":material/settings:"),
)
