# Rendered by infra from images/base-ml/image.yaml for mode docker-gpu.
# Do not edit: change the spec and run `infra render`.
FROM base
ARG SOURCE_DATE_EPOCH=315532800

LABEL \
      io.infra.image=base-ml \
      io.infra.mode=docker-gpu \
      io.infra.project=speech \
      io.infra.python=3.11 \
      io.infra.torch-policy=mounted \
      org.opencontainers.image.base.name=registry.example.com/speech/speech-base:latest-gpu \
      org.opencontainers.image.description='Shared numeric stack for the ML stages; torch only when the policy is baked' \
      org.opencontainers.image.title=speech-base-ml \
      org.opencontainers.image.vendor=speech \
      org.opencontainers.image.version=latest

USER 0:0

RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && pip install \
      'numpy>=1.26,<3'

USER 10001:10001
