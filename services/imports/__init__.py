"""``cordon import arrivals|residents FILE``: the city's lists, row by row, through the public API."""
