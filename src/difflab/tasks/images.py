"""Images in and out of the editing tasks: grayscale or RGB PNG files and ``.npz`` arrays, in [0, 1]."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DifflabError


#: the largest PNG (in pixels) the editing commands read; a bigger one is refused from its header
MAX_PIXELS = 4096 * 4096


def read_image(path: str | Path, what: str = "image", bounded: bool = True) -> torch.Tensor:
    """Images (N, C, H, W) float32 in [0, 1]: a PNG (one image; 8- or 16-bit grayscale, RGB, RGBA without alpha)
    or an ``.npz`` holding one array (N, C, H, W), (N, H, W) or (H, W) (the first of ``images``, ``samples``, or
    the only array). ``what`` names the input in errors; ``bounded=False`` lets an .npz leave [0, 1] (noisy images)."""
    path = Path(path)
    if not path.is_file():
        raise DifflabError(f"{what} file {str(path)!r} does not exist.")
    if path.suffix == ".png":
        from PIL import Image, UnidentifiedImageError

        try:
            with warnings.catch_warnings():  # PIL's bomb warning: the size is checked here, in one sentence
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(path)
            with im:
                if im.width * im.height > MAX_PIXELS:  # refused from the header, before decoding (a decompression bomb)
                    raise DifflabError(f"{what} file {str(path)!r} is {im.width}x{im.height} pixels; images over "
                                       f"{MAX_PIXELS:,} pixels are refused unread.")
                im.load()
                mode = im.mode
                if mode in ("RGBA", "P", "LA"):
                    im = im.convert("RGB" if mode != "LA" else "L")
                a = np.asarray(im)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise DifflabError(f"{what} file {str(path)!r} is not a readable PNG ({e}).") from None
        top = 65535.0 if a.dtype == np.uint16 or a.max(initial=0) > 255 else 255.0
        a = a.astype(np.float32) / top
        x = torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())
        return x[None]
    if path.suffix == ".npz":
        try:
            with np.load(path) as f:
                keys = [k for k in ("images", "samples") if k in f.files] or f.files
                if not keys:
                    raise DifflabError(f"{what} file {str(path)!r} holds no array.")
                a = np.asarray(f[keys[0]], dtype=np.float32)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise DifflabError(f"{what} file {str(path)!r} is not a readable .npz ({e}).") from None
        x = torch.from_numpy(a)
        x = x[None, None] if x.ndim == 2 else (x[:, None] if x.ndim == 3 else x)
        if x.ndim != 4:
            raise DifflabError(f"{what} array in {str(path)!r} has shape {tuple(a.shape)}; expected (N, C, H, W).")
        if not torch.isfinite(x).all() or (bounded and (x.min() < 0 or x.max() > 1)):
            raise DifflabError(f"{what} array in {str(path)!r} must hold finite values{' in [0, 1]' if bounded else ''}.")
        return x
    raise DifflabError(f"{what} file {str(path)!r} must be a .png or an .npz.")


def write_images(x: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write images (N, C, H, W) in [0, 1] atomically: ``.npz`` (array ``samples``), or ``.png``: one image at its
    own size (so it can be read back), several as an enlarged grid of ``nrow`` per row."""
    from ..io import atomic_path

    path = Path(path)
    x = x.detach().cpu().clamp(0, 1)
    if path.suffix == ".npz":
        with atomic_path(path) as tmp:
            np.savez(tmp, samples=x.numpy().astype(np.float32))
        return path
    if path.suffix != ".png":
        raise DifflabError(f"output file {str(path)!r} must end in .png or .npz.")
    from ..plotting import save_image_grid

    if x.shape[0] == 1:
        from PIL import Image

        a = np.round(x[0].numpy() * 255).astype(np.uint8)
        with atomic_path(path) as tmp:
            Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(tmp, format="PNG")
        return path
    return save_image_grid(x, path, nrow=nrow)


__all__ = ["read_image", "write_images"]
