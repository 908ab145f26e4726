"""`infra serve`: films in over HTTP, subtitles out; the same job machinery as the CLI behind an ASGI app."""
