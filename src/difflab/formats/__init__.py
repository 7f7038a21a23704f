"""Model formats in and out of difflab: diffusers' model folders (:mod:`difflab.formats.diffusers`) and ONNX graphs
(:mod:`difflab.formats.onnx`). Neither needs its library to write; reading a diffusers folder builds diffusers'
``UNet2DModel`` (the ``difflab[diffusers]`` extra)."""


def read_model(path, weights: str = "ema"):
    """(directory, config with defaults, weights, step, where the weights lie) of any model difflab loads: a diffusers
    model folder (:func:`difflab.formats.diffusers.read_folder`), else a run directory, an exported model or a shipped
    name (:func:`difflab.pretrained.read_model`)."""
    from ..pretrained import read_model as read_difflab
    from .diffusers import is_model_folder, read_folder

    if weights not in ("ema", "model"):
        from ..errors import DifflabError
        raise DifflabError(f"weights must be 'ema' or 'model', got {weights!r}.")
    return read_folder(path) if is_model_folder(path) else read_difflab(path, weights)
