"""Flags, experiments, KPIs and their statistics."""
