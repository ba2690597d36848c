"""Prompt texts and the JSON schemas that constrain what an LLM may answer."""
