"""Runtime: wiring, the Lambda-shaped batch handler, the local event-source runner."""
