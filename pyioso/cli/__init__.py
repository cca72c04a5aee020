"""The `pyioso` command line."""
