"""Chalice entry points. Only wiring: the API blueprint and one Lambda per stage.

Each stage Lambda is fed by the MSK event source mapping infra/ creates
(Chalice has no MSK trigger); locally `laptop.stack` plays that part.
"""
import logging
import os

from chalice import Chalice

from chalicelib.api.routes import api
from chalicelib.bootstrap import get_platform
from chalicelib.config import OUTBOX_STREAM_ARN
from chalicelib.handlers.batch import handle_batch
from chalicelib.handlers.relay import relay_stream_records
from chalicelib.observability import tracing
from chalicelib.services import audit, health, reporting, takeover
from chalicelib.stages import STAGES, reconciliation

# Placeholder so `chalice local` and tests can load the app; infra/ sets the real ARN.
LOCAL_STREAM_ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/payments-platform/stream/local"
# The lease keeper's Lambda times out at 60 s (infra/stacks/lambdas.py, KEEPER_TIMEOUT_S): it keeps the
# leases for 50 s, leaving room for its last step and a takeover scan, and the next invocation a
# minute later carries on.
KEEPER_RUN_S = 50

app = Chalice(app_name="payments", configure_logs=False)
# Chalice pins the logger named after the app ("payments") at ERROR, which would silence every
# payments.* logger below it; its own logger becomes a child, and LOG_LEVEL rules the rest.
logging.getLogger("payments").setLevel(logging.NOTSET)
app.log = logging.getLogger("payments.app")
app.debug = False
app.register_blueprint(api)


@app.middleware("all")
def _export_spans(event, get_response):
    """A Lambda container may freeze after it answers: hand its spans to the ADOT collector first."""
    try:
        return get_response(event)
    finally:
        tracing.flush_if_lambda()


def _stage_lambda(stage: str):
    """The Lambda for one stage: an MSK batch in, partial batch failures out (handlers/batch.py).

    Chalice names a Lambda's handler after the function ("app.<name>"), so each is bound to a
    module attribute of its stage's name below."""
    def handler(event, context):
        try:
            return handle_batch(event, STAGES[stage], get_platform())
        finally:
            tracing.flush_if_lambda()
    handler.__name__ = handler.__qualname__ = stage
    return app.lambda_function(name=stage)(handler)


# validation, risk, routing, authorization, capture, refund, settlement, notification
STAGE_HANDLERS = {name: _stage_lambda(name) for name in STAGES}
globals().update(STAGE_HANDLERS)


@app.schedule("rate(1 minute)", name="reconciliation")
def reconcile_unknown_outcomes(event):
    """Status checks of unknown PSP outcomes that are due (chalicelib/stages/reconciliation.py), the
    audit chainer (committed state changes into their tenants' hash chains), then health metrics."""
    platform = get_platform()
    handled = reconciliation.run_due(platform, limit=500)
    audited = audit.chain_all(platform)
    health.report_health(platform)
    return {"handled": handled, "audited": audited}


@app.schedule("rate(1 minute)", name="lease_keeper")
def lease_keeper(event):
    """This region's lease renewed every third of its ttl, and any lapsed one taken over with a scan
    (chalicelib/services/takeover.py)."""
    return takeover.keep_leases(get_platform(), seconds=KEEPER_RUN_S)


@app.on_dynamodb_record(stream_arn=os.environ.get(OUTBOX_STREAM_ARN) or LOCAL_STREAM_ARN, batch_size=100,
                        starting_position="TRIM_HORIZON", name="outbox_relay")
def outbox_relay(event):
    """The table's stream -> Kafka: publish new outbox items, then mark them published.

    Raising makes Lambda retry the batch, so a record is never lost (duplicates are)."""
    platform = get_platform()
    return {"published": relay_stream_records(event.to_dict()["Records"], platform.store.feed, platform.store.outbox, platform.bus)}


@app.on_dynamodb_record(stream_arn=os.environ.get(OUTBOX_STREAM_ARN) or LOCAL_STREAM_ARN, batch_size=100,
                        starting_position="TRIM_HORIZON", name="reports")
def reports(event):
    """The table's stream -> per-tenant report counters (GET /v1/reports/summary).

    Each change is counted with its processed marker in one transaction: a retried batch counts nothing twice."""
    platform = get_platform()
    return {"counted": reporting.report_stream_records(event.to_dict()["Records"], platform.store)}

