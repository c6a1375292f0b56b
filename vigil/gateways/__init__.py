"""Bedside-monitor gateways: HL7 v2 ORU^R01 (IHE PCD-01) over MLLP and FHIR R4 Observations.

Monitor gateways (Philips IntelliBridge, GE CARESCAPE Gateway, Mindray eGateway, Capsule)
do not write Vigil's JSON to Kafka; they speak HL7 v2 over MLLP, newer ones FHIR. These
modules turn what they send into :class:`vigil.wire.records.VitalsRecord` on
``vigil.vitals`` and answer only once the broker holds it:

- :mod:`.mdc`: IEEE 11073-10101 (MDC) and LOINC codes, MDC units, to Vigil's codes and UCUM;
- :mod:`.hl7_message`: ORU^R01 to records and per-OBX refusals, the ACK, de-identification;
- :mod:`.mllp`: MLLP framing and the asyncio server, with limits for hostile senders;
- :mod:`.hl7_service`: one message in, records produced, one ACK out;
- :mod:`.fhir`: the aiohttp FHIR endpoint (Observation, batch/transaction Bundle, metadata);
- :mod:`.producer`: the acks=all producer with a bounded wait;
- :mod:`.intake`: the validation and dead letters both gateways share;
- :mod:`.metrics`: the gateways' Prometheus metrics (their own registry);
- :mod:`.sender`: ``vigil hl7-send``, PhysioNet stays as ORU^R01 over MLLP;
- :mod:`.runner`: running a listener in a thread or a subprocess (``vigil demo --via hl7``);
- :mod:`.cli`: what the ``vigil`` commands call.

Layering: this package sits on top; it imports records, codes, validation, pseudonym,
settings and broker, never the worker (processor, agents, app), models, alerts or the board.
"""
