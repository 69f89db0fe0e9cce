"""The payment orchestration platform. Chalice ships this folder beside app.py."""
