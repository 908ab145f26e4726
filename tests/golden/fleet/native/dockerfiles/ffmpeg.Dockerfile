# Rendered by infra from images/ffmpeg/image.yaml for mode native.
# Do not edit: change the spec and run `infra render`.
FROM base
ARG SOURCE_DATE_EPOCH=315532800

LABEL \
      io.infra.image=ffmpeg \
      io.infra.mode=native \
      io.infra.project=speech \
      io.infra.python=3.11 \
      io.infra.torch-policy=mounted \
      org.opencontainers.image.base.name=registry.example.com/speech/speech-base:latest-native \
      org.opencontainers.image.description='FFmpeg for the demux and mux stages' \
      org.opencontainers.image.title=speech-ffmpeg \
      org.opencontainers.image.vendor=speech \
      org.opencontainers.image.version=latest

USER 0:0

RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then set -- -o Acquire::https::CAInfo=/run/secrets/ca_bundle; fi \
 && apt-get "$@" update \
 && DEBIAN_FRONTEND=noninteractive apt-get "$@" install -y --no-install-recommends \
      ffmpeg \
 && rm -rf /var/log/apt/* /var/log/*.log /var/cache/ldconfig/aux-cache /var/cache/debconf/*-old

USER 10001:10001

COPY --from=jobproto --chown=0:0 ["__init__.py", "jobproto.py", "/opt/infra/infra/"]
COPY --from=stages --chown=0:0 ["__init__.py", "_*.py", "worker.py*", "demux.py*", "mux.py*", "/opt/infra/stages/"]
