"""Images: the build plan (DAG, content hashes), the parallel BuildKit scheduler, summaries, base images, push."""
