"""The ports' own errors: adapters translate vendor errors into these (STYLE 5)."""


class ConcurrencyConflict(Exception):
    """A conditional write lost: someone else changed the item first."""


class AlreadyExists(Exception):
    """A create found the item already there."""


class AlreadyProcessed(Exception):
    """The consumer has already applied this event; its effects are durable."""


class AuditTampered(Exception):
    """The stored audit head does not verify: refuse to extend a chain someone rewrote."""
