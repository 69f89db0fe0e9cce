"""CDK Terrain stacks: one global stack and one stack per region."""
