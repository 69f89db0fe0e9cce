"""The body of every Lambda handler app.py declares: an MSK batch in, partial failures out.

batch.py runs a stage over one MSK event (partitions, the batch's one transaction, DLQ routing);
msk.py reads and writes Lambda's MSK event shape; dlq.py builds dead-letter records; relay.py
publishes committed outbox events (the DynamoDB stream in AWS, the store's feed embedded).
"""
