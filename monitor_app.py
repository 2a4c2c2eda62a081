"""GarageGrid monitor: ``streamlit run monitor_app.py`` (port 8501).

Reads the store behind ``GARAGEGRID_DATABASE_URL`` (default
``sqlite+aiosqlite:///garagegrid.db``); the pages live in ``csms/monitor/pages``.
"""

from __future__ import annotations

import streamlit as st

from csms.monitor.pages import PAGES

st.set_page_config(
    page_title="GarageGrid monitor", page_icon=":material/ev_station:", layout="wide"
)
navigation = st.navigation(
    [st.Page(page.path, title=page.title, icon=page.icon, default=page.default) for page in PAGES]
)
navigation.run()
