# Rendered by infra from images/pyannote-vad/image.yaml for mode docker-gpu.
# Do not edit: change the spec and run `infra render`.
FROM base-ml
ARG SOURCE_DATE_EPOCH=315532800

LABEL \
      io.infra.image=pyannote-vad \
      io.infra.mode=docker-gpu \
      io.infra.project=speech \
      io.infra.python=3.11 \
      io.infra.torch-policy=mounted \
      org.opencontainers.image.base.name=speech-base-ml:latest-gpu \
      org.opencontainers.image.description='Voice activity detection with Silero VAD (ONNX) and pyannote segmentation' \
      org.opencontainers.image.title=speech-pyannote-vad \
      org.opencontainers.image.vendor=speech \
      org.opencontainers.image.version=latest

ENV \
    PYANNOTE_METRICS_ENABLED=false

USER 0:0

# The versions infra.lock pins (`infra lock`), as a requirements file on pip's stdin.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && printf '%s\n' \
      'faster-whisper==1.0.0 --hash=sha256:3b86d43ce7d4a5dc5284c774f7aaaa39c7e230583ecbc8ce8d230f1c133842dd' \
      'faster-whisper-support==1.0.0 --hash=sha256:ef663f06827d20d2718af0f537a848f7332c4ccda0390072ac0936539e6e878f' \
      'onnxruntime==1.0.0 --hash=sha256:8eeceae1fd9f7aad4f66a0203c14f8abd56964912d14f01e8e17cbd7af53a677' \
      'onnxruntime-support==1.0.0 --hash=sha256:24418705253b0a9e8a6cfe2dde0aa3c1c5b41e1b02216dac17fec15dad80e7d1' \
  | pip install --require-hashes -r /dev/stdin

USER 10001:10001

COPY --from=jobproto --chown=0:0 ["__init__.py", "jobproto.py", "/opt/infra/infra/"]
COPY --from=stages --chown=0:0 ["__init__.py", "_*.py", "worker.py*", "vad.py*", "/opt/infra/stages/"]
