"""GarageGrid monitor: ``streamlit run monitor_app.py`` (port 8501).

Reads the store behind ``GARAGEGRID_DATABASE_URL`` (default
``sqlite+aiosqlite:///garagegrid.db``); the pages live in ``csms/monitor/pages``. Nothing
but the login page renders without a session (`csms.monitor.access`); the navigation
holds only the pages the account's role may open.
"""

from __future__ import annotations

import streamlit as st

from csms.monitor import access

st.set_page_config(
    page_title="GarageGrid monitor", page_icon=":material/ev_station:", layout="wide"
)
account = access.gate()
navigation = st.navigation(access.navigation(account))
access.sidebar(account)
navigation.run()
