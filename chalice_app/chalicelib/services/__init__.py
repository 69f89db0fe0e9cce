"""Application services: what the API, payctl and the scheduled Lambda ask of the platform.

payments.py (create, capture, cancel, refund, read), tenants.py (onboarding, API keys),
reporting.py (report counters from the change feed), audit.py (the hash-chained audit log),
dlq.py (listing and redriving dead letters).
"""
