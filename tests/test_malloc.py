"""difflab.malloc: large tensors stay in glibc's heap once difflab is imported, results do not change, and a user's own
choice of allocator settings is left alone."""

import os
import subprocess
import sys

import pytest

from difflab import malloc

glibc = pytest.mark.skipif(malloc._glibc() is None, reason="the C library is not glibc")

# Counts the bytes glibc serves from their own mmap (mallinfo2's hblkhd) around one 100 MiB tensor.
MAPPED = """
import ctypes, difflab, torch
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None); libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblkhd
x = torch.empty(100 << 20, dtype=torch.uint8)
print(difflab.malloc.applied(), (libc.mallinfo2().hblkhd - before) >> 20)
"""

# Samples a small untrained U-Net at MNIST size, batch 96 (activations of 38 MB: above glibc's largest dynamic
# mmap threshold), and prints the samples' bytes as a hash.
SAMPLES = """
import hashlib, torch, difflab
from difflab.models.unet import UNet
from difflab.denoiser import ModelDenoiser
torch.manual_seed(0); torch.set_num_threads(1)
net = UNet(in_channels=1, image_size=28, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
           attention_resolutions=(14,), groups=8).eval()
den = ModelDenoiser(net, difflab.schedules.get("cosine", T=1000), "eps")
x = difflab.sample(den, (96, 1, 28, 28), sampler="ddim", steps=2, generator=torch.Generator().manual_seed(1))
print(difflab.malloc.applied(), hashlib.sha256(x.numpy().tobytes()).hexdigest())
"""


def _run(code: str, **env: str) -> list[str]:
    full = {k: v for k, v in os.environ.items() if k not in {"DIFFLAB_MALLOC", "LD_PRELOAD"}} | env
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True)
    return out.stdout.split()


@glibc
def test_large_tensor_comes_from_the_heap_only_when_set_up():
    applied, mapped = _run(MAPPED)
    assert applied == "True" and int(mapped) == 0
    applied, mapped = _run(MAPPED, DIFFLAB_MALLOC="default")
    assert applied == "False" and int(mapped) >= 100  # glibc's default maps a 100 MiB block on its own


@glibc
def test_samples_are_bit_identical_with_and_without():
    tuned, default = _run(SAMPLES), _run(SAMPLES, DIFFLAB_MALLOC="off")
    assert tuned[0] == "True" and default[0] == "False"
    assert tuned[1] == default[1]


@pytest.mark.parametrize("name,value,why", [
    ("DIFFLAB_MALLOC", "default", "DIFFLAB_MALLOC"),
    ("MALLOC_MMAP_THRESHOLD_", "65536", "MALLOC_MMAP_THRESHOLD_"),
    ("MALLOC_TRIM_THRESHOLD_", "65536", "MALLOC_TRIM_THRESHOLD_"),
    ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536", "GLIBC_TUNABLES"),
    ("LD_PRELOAD", "/usr/lib/libjemalloc.so.2", "LD_PRELOAD"),
])
def test_a_users_own_choice_is_left_alone(monkeypatch, name, value, why):
    for other in ("DIFFLAB_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD"):
        monkeypatch.delenv(other, raising=False)
    assert malloc.user_chose() is None
    monkeypatch.setenv(name, value)
    assert why in malloc.user_chose()
