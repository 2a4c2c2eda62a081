"""GarageGrid central system: OCPP 1.6J CSMS with site-wide load management."""

__version__ = "0.1.0"
