"""jubako."""
