"""OCPP 1.6J at the boundary: framing, schema validation, handlers, server, outgoing calls.

Named ``ocpp16`` so that it never shadows the ``ocpp`` library it builds on.
"""
