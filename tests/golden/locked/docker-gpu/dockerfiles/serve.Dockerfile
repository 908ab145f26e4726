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
      org.opencontainers.image.base.name=speech-ffmpeg:latest-gpu \
      org.opencontainers.image.description='infra itself with its serve extra, to run infra serve as the stack'"'"'s HTTP service (ffprobe from its parent)' \
      org.opencontainers.image.title=speech-serve \
      org.opencontainers.image.vendor=speech \
      org.opencontainers.image.version=latest

USER 0:0

# The versions infra.lock pins (`infra lock`), as a requirements file on pip's stdin.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && printf '%s\n' \
      'fastapi==1.0.0 --hash=sha256:6aee0e678a168eeae8df707e083a158fc23515bdd52eed77ec65b669baa82917' \
      'fastapi-support==1.0.0 --hash=sha256:a804ee8cae278ae113e638dca4015bdb7939591fa0d848d260065819eb26b119' \
      'jinja2==1.0.0 --hash=sha256:c34aaa3c7f065f58955d8a6522cbe38d43012b068c68fff552cbc090abf5ba3b' \
      'jinja2-support==1.0.0 --hash=sha256:e74d55e62d2ab2f32565ee5088987865a1831d821412d257f2055b3b0990c3f3' \
      'psutil==1.0.0 --hash=sha256:7cbd0f5ba22d2667257ef65d8ef53b788bd636156f6014085cb6ad4b7ce4af22' \
      'psutil-support==1.0.0 --hash=sha256:80891ffe5a75d5d63eb2252e762e3a0dcae83b63b76cddd7be5df19a78c62978' \
      'pydantic==1.0.0 --hash=sha256:6366233f6ef384378474702390c9c5cb784f7c52ed486ac14766de2ffce79210' \
      'pydantic-support==1.0.0 --hash=sha256:9f903501a8fd417728453d65662325c987e691001611cb0d9fa518f827f838f6' \
      'python-multipart==1.0.0 --hash=sha256:9803cf936029ac5af7e8a9de5441867003746f7db1f5a86f5567294b85efc9c6' \
      'python-multipart-support==1.0.0 --hash=sha256:a3b1b66e9055ef106612d7033664644a86eceafc41987dda89121b072c425e05' \
      'python-on-whales==1.0.0 --hash=sha256:b356b82214c512bb5e2961d9b20201bb0c6b4d007731cfb8ac5608a478367ea0' \
      'python-on-whales-support==1.0.0 --hash=sha256:35ab7d547ec0415a5a5de09115754725d8ee7f8c2d3bd443da349171da830dc9' \
      'pyyaml==1.0.0 --hash=sha256:ebb0e16545c911bd31ec33ace57dedf84c04e673d2dc28c0290868e4adf4db77' \
      'pyyaml-support==1.0.0 --hash=sha256:bfd4395b0738c2114b8d150780b0022b5da314a91609b06ed536f0f711826277' \
      'rich==1.0.0 --hash=sha256:7baa68f2418ba82d2545a780c00d7a8778249bbcdaf7369114534874ea6d3bd6' \
      'rich-support==1.0.0 --hash=sha256:2fdce3feeb8f3928f9cdfe575d3d60e0ebfbceb8383341fbd576c9fc646c3a45' \
      'typer==1.0.0 --hash=sha256:19cb4ed1d91e113962aee8a64bb8c911ff76946528022843515f886de2665526' \
      'typer-support==1.0.0 --hash=sha256:08493fca6999082a7a143596e8fdb5ac42f7d1526f2244d97e9ebecceea33dfb' \
      'uvicorn==1.0.0 --hash=sha256:bab9d6737501f7a2521e63c358531a9ee20394a17ca15e05901715b42906f8cb' \
      'uvicorn-support==1.0.0 --hash=sha256:67ec92e7c7fe9528ce355725176adb13b8fe1e5dc820d0c7aca831a7176363a9' \
  | pip install --require-hashes -r /dev/stdin

USER 10001:10001

COPY --from=jobproto --chown=0:0 --exclude=**/__pycache__ --exclude=**/*.pyc [".", "/opt/infra/infra/"]
COPY --from=stages --chown=0:0 --exclude=**/__pycache__ --exclude=**/*.pyc [".", "/opt/infra/stages/"]
