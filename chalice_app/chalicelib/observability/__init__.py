"""Observability plumbing shared by every entry point: the scope of the work in hand
(context), OpenTelemetry traces with X-Ray ids (tracing), JSON logs (logs) and EMF
metrics (metrics). Stages never import an exporter: bootstrap picks them by mode."""
