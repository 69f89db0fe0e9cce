"""`make bench`: end-to-end throughput and latency of the pipeline beside the bare SQLite substrate."""
