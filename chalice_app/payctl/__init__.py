"""payctl: the operators' command line (tenants, keys, traces, DLQ, audit, ledger, demo).

cli.py parses the commands (`python -m payctl`, installed as `.venv/bin/payctl`); admin.py and
ops.py run them on the same Platform the Lambdas use. Never ships in deployment.zip.
"""
