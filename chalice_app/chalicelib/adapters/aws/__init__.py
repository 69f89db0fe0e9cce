"""The aws and aws-local adapters: DynamoDB (dynamodb*.py), Kafka / MSK (kafka.py), KMS (kms.py);
setup.py builds their clients from the environment and provisions aws-local."""
