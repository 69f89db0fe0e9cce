"""Infrastructure as code for the payments platform (CDK Terrain). Entry point: infra/main.py."""
