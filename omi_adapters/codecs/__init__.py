"""Wire codecs: pure functions between wire formats and numpy, free of any transport import.

- :mod:`~omi_adapters.codecs.tensors`: raw tensor bytes, BYTES length prefixes, BF16.
- :mod:`~omi_adapters.codecs.oip_json`: OIP REST JSON bodies.
- :mod:`~omi_adapters.codecs.binary`: the binary tensor data extension.
- :mod:`~omi_adapters.codecs.typed_contents`: gRPC ``InferTensorContents``.
- :mod:`~omi_adapters.codecs.omi_files`: OMI input and output files.
"""
