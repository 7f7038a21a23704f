"""Tasks: editing with a trained diffusion model, each a thin composition of a denoiser and a sampler.

One module per task, each function naming its paper and equation:

* :mod:`~difflab.tasks.inpaint` — inpainting by replacement (Song et al. 2021, Appx. I.2) and RePaint
  resampling (Lugmayr et al. 2022), and with the predictor-corrector sampler for score-SDE runs;
* :mod:`~difflab.tasks.sdedit` — SDEdit (Meng et al. 2022): noise a guide to t_0 and denoise;
* :mod:`~difflab.tasks.ilvr` — zero-shot super-resolution by low-pass guidance (Choi et al. 2021);
* :mod:`~difflab.tasks.superres` — SR3, a super-resolution model conditioned on the upsampled low-res image
  (Saharia et al. 2021);
* :mod:`~difflab.tasks.interpolate` — DDIM inversion and slerp of x_T (Song et al. 2021), and DDPM's mixing of
  two noised images (Ho et al. 2020, Sec. 4.3);
* :mod:`~difflab.tasks.denoise` — denoising an image of known noise level by starting the reverse process at the
  matching step (Sohl-Dickstein et al. 2015, Fig. 5);
* :mod:`~difflab.tasks.trajectory` — x_t and x̂_0 along a sampling run, and samples sharing x_T or x_t.

Conditioning on a known linear measurement of the image (the pixels outside a hole, the low frequencies) is one
denoiser wrapper, :class:`~difflab.tasks.measurement.Replacement`, which any sampler runs unchanged. Every task
works in the model's (normalised) coordinates; the ``*_run`` helpers take and return images in data coordinates.
"""
