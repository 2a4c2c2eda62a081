"""GarageGrid monitor: ``streamlit run monitor_app.py`` (port 8501).

Reads the store behind ``GARAGEGRID_DATABASE_URL`` (default
``sqlite+aiosqlite:///garagegrid.db``); the pages live in ``csms/monitor/pages``. Nothing
but the login page renders without a session (`csms.monitor.access`); the navigation
holds only the pages the account's role may open.
"""

from __future__ import annotations

import streamlit as st

from csms.monitor import access
from csms.monitor.pages import default_page, pages_for

st.set_page_config(
    page_title="GarageGrid monitor", page_icon=":material/ev_station:", layout="wide"
)
account = access.gate()
landing = default_page(account.role)
navigation = st.navigation(
    [
        st.Page(
            page.path,
            title=page.title_for(account.role),
            icon=page.icon,
            default=page.name == landing,
        )
        for page in pages_for(account.role)
    ]
)
access.sidebar(account)
navigation.run()
