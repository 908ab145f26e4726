#!/usr/bin/env bash
PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.venv/bin:$PATH" exec infra job prepare "$@"
