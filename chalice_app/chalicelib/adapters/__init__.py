"""Adapters: one file per technology, each implementing ports from ports.py."""
