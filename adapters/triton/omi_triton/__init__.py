"""Triton Inference Server (Python backend) adapter of omi-adapters.

- :mod:`omi_triton.build`: ``omi build triton``, which writes a model repository.
- :mod:`omi_triton.config`: each model's ``config.pbtxt``, as Triton's ``ModelConfig`` message.
- :mod:`omi_triton.backend`: ``TritonPythonModel``, what each repository's ``model.py`` imports.
- :mod:`omi_triton.server`: install and run a real ``tritonserver`` locally.

Nothing is imported here: the backend runs inside Triton without the build's dependencies.
"""
