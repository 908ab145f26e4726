# Rendered by infra from images/pyannote-vad/image.yaml for mode docker-cpu.
# Do not edit: change the spec and run `infra render`.
FROM base-ml
ARG SOURCE_DATE_EPOCH=315532800

LABEL \
      io.infra.image=pyannote-vad \
      io.infra.mode=docker-cpu \
      io.infra.project=speech \
      io.infra.python=3.11 \
      io.infra.torch-policy=mounted \
      org.opencontainers.image.base.name=registry.example.com/speech/speech-base-ml:latest-cpu \
      org.opencontainers.image.description='Voice activity detection with Silero VAD (ONNX) and pyannote segmentation' \
      org.opencontainers.image.title=speech-pyannote-vad \
      org.opencontainers.image.vendor=speech \
      org.opencontainers.image.version=latest

ENV \
    PYANNOTE_METRICS_ENABLED=false

USER 0:0

RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install \
      'onnxruntime>=1.17' \
      faster-whisper==1.2.1

USER 10001:10001

COPY --from=jobproto --chown=0:0 ["__init__.py", "jobproto.py", "/opt/infra/infra/"]
COPY --from=stages --chown=0:0 ["__init__.py", "_*.py", "worker.py*", "vad.py*", "/opt/infra/stages/"]
