"""The operator HTTP API: ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``) and ``/metrics``.

    csms/api/
    ├── app.py        the FastAPI application: problem details, /metrics
    ├── routes/       the resources: garage (site, building load, live), stations (id tags,
    │                 commands), sessions (meter values, notifications)
    ├── context.py    what a request reaches: the store, the clock, the CSMS if in-process
    ├── security.py   bearer tokens -> an account with a role (csms.auth), audit
    ├── problems.py   RFC 9457 problem details for every error
    ├── schemas.py    request and response bodies (the OpenAPI document's schemas)
    ├── reads.py      the few read queries only the API needs
    └── server.py     served by uvicorn: inside `csms serve --api-port` or as `csms api`

The API changes the world the way the monitor does: it writes the store (settings,
stations, a resident's departure and need, a building load reading) or queues an outbox
command, and the CSMS acts on it. In `csms serve --api-port` it shares the process, the
store and the central system, and nudges the controller at once; as `csms api` it is a
separate process on the same database.
"""
