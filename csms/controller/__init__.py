"""Load management in `csms serve`: snapshot -> scheduler -> safe dispatch of profiles.

``planning`` is pure (inputs for the scheduler, fail-safe defaults, what to send and in
which order, notification texts); ``service`` is the asyncio loop that reads the store,
calls the scheduler and sends ``SetChargingProfile`` through the central system.
"""
