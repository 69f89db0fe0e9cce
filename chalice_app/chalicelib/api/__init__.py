"""HTTP API: Chalice blueprint, problem+json errors, authentication."""
