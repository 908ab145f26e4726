# Rendered by infra from images/serve/image.yaml for mode docker-gpu.
# Do not edit: change the spec and run `infra render`.
FROM ffmpeg
ARG SOURCE_DATE_EPOCH=315532800

LABEL \
      io.infra.image=serve \
      io.infra.mode=docker-gpu \
      io.infra.project=speech \
      io.infra.python=3.11 \
      io.infra.torch-policy=mounted \
      org.opencontainers.image.base.name=registry.example.com/speech/speech-ffmpeg:latest-gpu \
      org.opencontainers.image.description='infra itself with its serve extra, to run infra serve as the stack'"'"'s HTTP service (ffprobe from its parent)' \
      org.opencontainers.image.title=speech-serve \
      org.opencontainers.image.vendor=speech \
      org.opencontainers.image.version=latest

USER 0:0

RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install \
      'typer>=0.12,<0.29' \
      'rich>=13' \
      'jinja2>=3.1' \
      'pydantic>=2.6' \
      'PyYAML>=6' \
      'python-on-whales>=0.70' \
      'psutil>=5.9' \
      'fastapi>=0.110' \
      'uvicorn>=0.29' \
      'python-multipart>=0.0.9'

USER 10001:10001

COPY --from=jobproto --chown=0:0 --exclude=**/__pycache__ --exclude=**/*.pyc [".", "/opt/infra/infra/"]
COPY --from=stages --chown=0:0 --exclude=**/__pycache__ --exclude=**/*.pyc [".", "/opt/infra/stages/"]
