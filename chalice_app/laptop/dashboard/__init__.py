"""The operators' dashboard for the local stack: metrics JSON and a page that draws it."""
