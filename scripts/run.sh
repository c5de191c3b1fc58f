#!/usr/bin/env bash
# Set up and run the whole suite: python main.py [services...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
exec .venv/bin/python main.py "$@"
