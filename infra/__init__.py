"""infra: infrastructure as code for a film-to-subtitles speech pipeline."""

__version__ = "0.1.0"
