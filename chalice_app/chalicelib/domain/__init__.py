"""Pure domain model: payments, attempts, money, the state machine, events.

Imports only the standard library, currency data and itself -- no I/O, no AWS,
no Kafka, no SQLite, no Chalice (tests/unit/test_domain_purity.py enforces it).
"""
