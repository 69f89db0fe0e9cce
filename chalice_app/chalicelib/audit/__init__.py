"""The audit chain's rules, shared by the audit service and both audit-log adapters.

chain.py: canonical bodies, the hash chain and the MAC'd head; rows.py: the audit rows a
committed state change writes beside it (chained later by services/audit.py).
"""
