"""The command-line shell over ``memcli.api``: parse, call one API function, hand the result to ``ui``."""
