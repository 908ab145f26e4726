#!/usr/bin/env bash
# Install the project in the current folder (editable, with extras) into a virtualenv, unless the
# virtualenv's stamp says that exact install is done. Used by scripts/setup.sh.
# Usage: scripts/install-venv.sh VENV [EXTRAS] [MODULE]
#   EXTRAS  e.g. "[test]" (default: none)
#   MODULE  a module that must import afterwards (default: infra.cli.app)
# The stamp (VENV/.infra-stamp: the hash of pyproject.toml and the extras) is written only when pip
# succeeded and MODULE imports, so a failed install exits non-zero and is tried again next time.
set -euo pipefail

venv="${1:?usage: install-venv.sh VENV [EXTRAS] [MODULE]}"
extras="${2:-}"
module="${3:-infra.cli.app}"
say() { printf 'setup: %s\n' "$*" >&2; }

stamp="$venv/.infra-stamp"
want="$(sha256sum pyproject.toml | cut -c1-16)$extras"
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
say "installing .$extras into $venv"
rm -f "$stamp"
# pip's 'WARNING: Location' lines are noise. The filter itself always succeeds (grep -v exits 1 when it
# passes nothing on), so under pipefail the pipeline fails exactly when pip does.
if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".$extras" 2>&1 \
    | { grep -v '^WARNING: Location' >&2 || true; }; then
  say "pip could not install .$extras into $venv (see above)"
  exit 1
fi
if ! "$venv/bin/python" -c "import $module"; then
  say "installed, but $module does not import"
  exit 1
fi
echo "$want" >"$stamp"
