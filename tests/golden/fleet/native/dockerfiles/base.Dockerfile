# Rendered by infra from images/base/image.yaml for mode native.
# Do not edit: change the spec and run `infra render`.
FROM speech-os-bookworm:bookworm-6ff06b723283
ARG SOURCE_DATE_EPOCH=315532800

LABEL \
      io.infra.image=base \
      io.infra.mode=native \
      io.infra.project=speech \
      io.infra.python=3.11 \
      io.infra.torch-policy=mounted \
      org.opencontainers.image.base.name=speech-os-bookworm:bookworm-6ff06b723283 \
      org.opencontainers.image.description='Python runtime and the non-root user every stage image starts from' \
      org.opencontainers.image.title=speech-base \
      org.opencontainers.image.vendor=speech \
      org.opencontainers.image.version=latest

ENV \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/opt/infra \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv

# Keep downloaded packages: /var/cache/apt is a cache mount, not part of a layer.
RUN rm -f /etc/apt/apt.conf.d/docker-clean \
 && echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > /etc/apt/apt.conf.d/keep-cache

RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then set -- -o Acquire::https::CAInfo=/run/secrets/ca_bundle; fi \
 && apt-get "$@" update \
 && DEBIAN_FRONTEND=noninteractive apt-get "$@" install -y --no-install-recommends \
      tini \
 && rm -rf /var/log/apt/* /var/log/*.log /var/cache/ldconfig/aux-cache /var/cache/debconf/*-old

RUN python3 -m venv /opt/venv
# The native env's site-packages, mounted at run time, go after the image's own (site.addsitedir).
RUN printf '%s\n' 'import site; site.addsitedir("/opt/infra/native-site")' > /opt/venv/lib/python3.11/site-packages/zz-infra-native-site.pth

RUN groupadd --gid 10001 infra \
 && useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/infra \
      --shell /usr/sbin/nologin infra
WORKDIR /home/infra

USER 10001:10001

ENTRYPOINT ["/usr/bin/tini", "--"]
