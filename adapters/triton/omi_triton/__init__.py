"""Triton Inference Server (Python backend) adapter of omi-adapters."""
