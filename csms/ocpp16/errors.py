"""CALLERROR codes exactly as OCPP-J 1.6 (section 4.2.3) spells them.

The ``ocpp`` package answers schema errors with ``FormatViolation`` (OCPP 2.0.1) and swaps
``NotImplemented`` / ``NotSupported``; GarageGrid raises these instead.
"""

from __future__ import annotations

from ocpp.exceptions import OCPPError


class NotImplementedAction(OCPPError):
    """The action is not known to OCPP 1.6 at all."""

    code = "NotImplemented"
    default_description = "Requested Action is not known by receiver"


class NotSupportedAction(OCPPError):
    """The action is an OCPP 1.6 action, but this central system does not take it."""

    code = "NotSupported"
    default_description = "Requested Action is recognized but not supported by the receiver"


class FormationViolation(OCPPError):
    code = "FormationViolation"
    default_description = (
        "Payload for Action is syntactically incorrect or not conform the PDU structure for Action"
    )


class PropertyConstraintViolation(OCPPError):
    code = "PropertyConstraintViolation"
    default_description = (
        "Payload is syntactically correct but at least one field contains an invalid value"
    )


class OccurenceConstraintViolation(OCPPError):
    # sic: OCPP 1.6 spells it with one "r".
    code = "OccurenceConstraintViolation"
    default_description = (
        "Payload for Action is syntactically correct but at least one of the "
        "fields violates occurence constraints"
    )


class TypeConstraintViolation(OCPPError):
    code = "TypeConstraintViolation"
    default_description = (
        "Payload for Action is syntactically correct but at least one of the "
        "fields violates data type constraints"
    )


class ProtocolError(OCPPError):
    code = "ProtocolError"
    default_description = "Payload for Action is incomplete"


class SecurityError(OCPPError):
    code = "SecurityError"
    default_description = (
        "During the processing of Action a security issue occurred preventing "
        "receiver from completing the Action successfully"
    )


class InternalError(OCPPError):
    code = "InternalError"
    default_description = (
        "An internal error occurred and the receiver was not able to process "
        "the requested Action successfully"
    )


class GenericError(OCPPError):
    code = "GenericError"
    default_description = "Any other error not covered by the previous ones"
