"""Model formats in and out of difflab: diffusers' model folders (:mod:`difflab.formats.diffusers`) and ONNX graphs
(:mod:`difflab.formats.onnx`). Neither needs its library to write; reading a diffusers folder builds diffusers'
``UNet2DModel`` (the ``difflab[diffusers]`` extra)."""
