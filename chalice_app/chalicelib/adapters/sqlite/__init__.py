"""Embedded mode on SQLite: the store (store.py and its parts), the durable bus (bus.py) and
the audit log (audit.py), each in its own database file under DATA_DIR."""
