"""Thin typed wrappers around external tools; all of them go through `_run`."""
