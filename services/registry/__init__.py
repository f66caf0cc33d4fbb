"""The registry service: compounds, households, residents and the arrivals staff verify."""
