"""Quality: word and diarization error rates, for the benchmarks that score the pipeline's output."""
