# Rendered by infra from images/subtitles/image.yaml for mode docker-cpu.
# Do not edit: change the spec and run `infra render`.
FROM base
ARG SOURCE_DATE_EPOCH=315532800

LABEL \
      io.infra.image=subtitles \
      io.infra.mode=docker-cpu \
      io.infra.project=speech \
      io.infra.python=3.11 \
      io.infra.torch-policy=mounted \
      org.opencontainers.image.base.name=registry.example.com/speech/speech-base:latest-cpu \
      org.opencontainers.image.description='Subtitle writing (SRT, WebVTT) from the ASR and diarization results; standard library only' \
      org.opencontainers.image.title=speech-subtitles \
      org.opencontainers.image.vendor=speech \
      org.opencontainers.image.version=latest

USER 10001:10001

COPY --from=jobproto --chown=0:0 ["__init__.py", "jobproto.py", "/opt/infra/infra/"]
COPY --from=stages --chown=0:0 ["__init__.py", "_*.py", "worker.py*", "subtitles.py*", "/opt/infra/stages/"]
