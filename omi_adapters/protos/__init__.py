"""Generated from protos/*.proto by scripts/gen_protos.py; do not edit."""
