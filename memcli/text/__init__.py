"""Pure text functions: chunking and time expressions. No I/O, no model."""
