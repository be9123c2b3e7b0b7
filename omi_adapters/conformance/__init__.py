"""``omi check``: a conformance checker for any Open Inference Protocol server (REST and gRPC) and any OMI server.

It runs what the protocols require (the OIP's REST and gRPC APIs, Triton's extensions a server
lists in its metadata, the OMI's ``ModzyModel`` service) and reports one row per check:
:mod:`.rest_checks`, :mod:`.grpc_checks`, :mod:`.omi_checks`; :mod:`.command` is the command
line, :mod:`.report` the rows. REST needs only the standard library; gRPC and OMI the ``grpc``
extra. Nothing here is imported by ``omi serve``.
"""
