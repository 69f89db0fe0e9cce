"""Edge defences: strict request parsing, PAN masking in logs, API key checks."""
