"""Talking to a registry through its HTTP API: manifests, blobs and tags, with docker's credentials."""
