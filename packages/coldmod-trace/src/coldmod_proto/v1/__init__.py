"""Coldmod wire protocol v1 (package coldmod.v1)."""
