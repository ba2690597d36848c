"""The logic behind each command. Services return typed records and never print."""
