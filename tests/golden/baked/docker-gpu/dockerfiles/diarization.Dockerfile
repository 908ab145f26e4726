# Rendered by infra from images/diarization/image.yaml for mode docker-gpu.
# Do not edit: change the spec and run `infra render`.
FROM base-ml
ARG SOURCE_DATE_EPOCH=315532800
ARG TORCH_INDEX_URL=https://pypi.org/simple

LABEL \
      io.infra.image=diarization \
      io.infra.mode=docker-gpu \
      io.infra.project=speech \
      io.infra.python=3.11 \
      io.infra.torch-policy=baked \
      org.opencontainers.image.base.name=registry.example.com/speech/speech-base-ml:latest-gpu \
      org.opencontainers.image.description='Speaker diarization with pyannote.audio, or the offline speaker-embedding backend' \
      org.opencontainers.image.title=speech-diarization \
      org.opencontainers.image.vendor=speech \
      org.opencontainers.image.version=latest

ENV \
    PYANNOTE_METRICS_ENABLED=false

USER 0:0

RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install \
      'scikit-learn>=1.3'

RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install --extra-index-url "${TORCH_INDEX_URL}" \
      torch==2.13.0 \
      pyannote.audio==4.0.7 \
      resemblyzer==0.1.4

USER 10001:10001

COPY --from=jobproto --chown=0:0 ["__init__.py", "jobproto.py", "/opt/infra/infra/"]
COPY --from=stages --chown=0:0 ["__init__.py", "_*.py", "worker.py*", "diarize.py*", "/opt/infra/stages/"]
