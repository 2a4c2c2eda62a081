"""Persistence: models, engine factory, migrations and the repository of queries."""
