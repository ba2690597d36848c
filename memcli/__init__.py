"""memcli: a personal memory assistant for the terminal. See ``memcli.api`` for the Python API."""

__version__ = "0.1.0"
