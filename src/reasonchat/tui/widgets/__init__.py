"""The chat screen's widgets, one job each."""
