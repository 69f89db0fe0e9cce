"""Application services: what the API, payctl and the scheduled Lambda ask of the platform.

payments.py (create, capture, cancel, refund, read; API idempotency keys) with api_io.py (request
bodies, problem details, the payment view), tenants.py (onboarding, API keys),
reporting.py (report counters from the change feed), audit.py (the hash-chained audit log),
dlq.py (listing and redriving dead letters).
"""
