"""Backends behind small typed interfaces (``base``): the SQLite catalog, vector indexes, models."""
