"""Hardware: detection (detect), the trusted cache (cache) and the recommendation table (recommend).

The snapshot's models live in ``snapshot``; reading a valid cache imports neither psutil nor pynvml.
"""
