# Rendered by infra from images/base-ml/image.yaml for mode docker-cpu.
# Do not edit: change the spec and run `infra render`.
FROM base
ARG SOURCE_DATE_EPOCH=315532800

LABEL \
      io.infra.image=base-ml \
      io.infra.mode=docker-cpu \
      io.infra.project=speech \
      io.infra.python=3.11 \
      io.infra.torch-policy=mounted \
      org.opencontainers.image.base.name=speech-base:latest-cpu \
      org.opencontainers.image.description='Shared numeric stack for the ML stages; torch only when the policy is baked' \
      org.opencontainers.image.title=speech-base-ml \
      org.opencontainers.image.vendor=speech \
      org.opencontainers.image.version=latest

USER 0:0

# The versions infra.lock pins (`infra lock`), as a requirements file on pip's stdin.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && printf '%s\n' \
      'numpy==1.0.0 --hash=sha256:73dd0baf8e5438da8816254a073ee43b61f8b2cdef6f393e0059cdbc55cb8d9c' \
      'numpy-support==1.0.0 --hash=sha256:774207341501494419c27b4fea11582c9a613822f4f227756594d18ccea34fa6' \
  | pip install --require-hashes -r /dev/stdin

USER 10001:10001
