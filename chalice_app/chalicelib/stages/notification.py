"""Notification: tell the merchant, by a signed webhook, how each payment ended, and when it waits
for the shopper (payments.requires_action: the next action to send the shopper to).

Delivery is at least once: the event id doubles as the webhook id so a
merchant can drop repeats. A failed delivery is retried with backoff by the
event source, then lands in this stage's own DLQ topics.
"""
from __future__ import annotations

import base64

import orjson

from ..domain.events import Event
from ..domain.payment import TimelineEntry
from ..errors import TransientError
from ..observability import tracing
from ..webhooks import SIGNATURE_HEADER, sign
from .context import StageContext

NAME = "notification"
CONSUMES = ("payments.settled", "payments.failed", "payments.cancelled", "payments.requires_action")
CALLS_OUT = True  # webhooks: partitions of a batch run concurrently, a slow merchant holds up only its own


def _record(event: Event, ctx: StageContext, payment, detail: dict) -> None:
    """Put the delivery on the payment's timeline, so a trace ends at the webhook."""
    version = payment.version
    payment.pending_timeline.append(TimelineEntry(ctx.now(), "notify", payment.state.value, payment.state.value,
                                                  NAME, {"event": event.type, **detail}))
    ctx.commit(event, payment, version)


def handle(event: Event, ctx: StageContext) -> None:
    tenant = ctx.tenant(event.tenant_id)
    hook = tenant.get("webhook") or {}
    payment = ctx.load(event)
    if not hook.get("url"):
        return _record(event, ctx, payment, {"delivered": False, "why": "no webhook URL configured"})
    body = orjson.dumps({
        "id": event.event_id, "type": event.type, "created": event.occurred_at,
        "data": {"payment_id": payment.payment_id, "status": payment.status, "amount": payment.amount,
                 "currency": payment.currency, "reference": payment.reference, **event.data},
    })
    secret = ctx.platform.keys.decrypt(event.tenant_id, base64.b64decode(hook["secret_enc"]))
    timestamp = int(ctx.clock.now().timestamp())
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, timestamp, body),
               "X-Correlation-Id": event.correlation_id, "Webhook-Id": event.event_id}
    with tracing.span("webhook", kind=tracing.CLIENT, **{"payments.webhook_id": event.event_id,
                                                          "payments.event_type": event.type}) as span:
        tracing.inject(headers)
        try:
            status = ctx.platform.post_webhook(hook["url"], body, headers, ctx.settings.webhook_timeout_s)
        except OSError as e:
            tracing.mark_error(span, type(e).__name__)
            raise TransientError(f"webhook to {hook['url']} failed: {e}") from None
        span.set_attribute("http.response.status_code", status)
    if not 200 <= status < 300:
        raise TransientError(f"webhook to {hook['url']} answered {status}")
    _record(event, ctx, payment, {"delivered": True, "status_code": status, "webhook_id": event.event_id})
