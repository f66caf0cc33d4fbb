"""The checkpoint service: gates, control levels, passes, passages and duty shifts."""
