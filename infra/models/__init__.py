"""Models: the catalogue of weights, the fetchers that fill the shared cache, and the one-time workspace bootstrap."""
