"""The Streamlit monitor: pages over the store, commands through the outbox.

    monitor_app.py          page config, login gate, navigation by role
                            (`streamlit run monitor_app.py`)
    csms/monitor/access.py  login page, sessions (idle and absolute expiry), the check
                            every page makes
    csms/monitor/writes.py  every write, checked against the account and audited
    csms/monitor/store.py   one background event loop per database URL running the async
                            store for Streamlit's synchronous script runs
    csms/monitor/frames.py  pure pandas: meter buckets -> what each station draws
    csms/monitor/charts.py  Altair charts
    csms/monitor/actions.py outbox payloads for the station actions
    csms/monitor/ui.py      shared page helpers: error boxes, time zone, formatting
    csms/monitor/pages/     one module per page

Accounts and roles (manager, resident, viewer) are stored in the database
(`csms.auth`, ``csms user``). Every page shows one site (`csms.monitor.access.page_site`):
the account's own, or the one an all-sites account picks in the sidebar.

The monitor never opens an OCPP connection: it reads the store, and changes the world
only by writing settings, stations, resident input or command-outbox rows.
"""
