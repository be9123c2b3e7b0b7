"""Knative Serving and KServe adapter of omi-adapters."""
