"""A Glue Schema Registry holding every event JSON Schema in schemas/events.

One Glue schema per file (<type>.v<N>), so each version stays readable on its own,
with BACKWARD compatibility like the compatibility test in tests/unit.
"""
from __future__ import annotations

import json
from pathlib import Path

from cdktn_provider_aws.glue_registry import GlueRegistry
from cdktn_provider_aws.glue_schema import GlueSchema
from constructs import Construct

from .common import name, tags


class SchemaRegistry(Construct):
    def __init__(self, scope: Construct, id: str, *, files: list[Path]) -> None:
        super().__init__(scope, id)
        self.registry = GlueRegistry(self, "registry", registry_name=name("events"),
                                     description="JSON Schemas of the payment events (schemas/events)", tags=tags())
        self.schemas = {}
        for path in files:
            definition = json.dumps(json.loads(path.read_text()), separators=(",", ":"), sort_keys=True)
            self.schemas[path.stem] = GlueSchema(
                self, f"schema-{path.stem.replace('.', '-')}", schema_name=path.stem,
                registry_arn=self.registry.arn, data_format="JSON", compatibility="BACKWARD",
                schema_definition=definition, tags=tags())
