"""``difflab app``: a local browser app over the library — generate with any sampler and guidance while watching
x_t and x̂_0 change, paint a mask and inpaint, SDEdit a sketch, compare samplers × steps, look at a toy's score field.

A face, no math: the server (:mod:`difflab.app.server`, Python's standard library, no network access, no CDN)
answers a page (``static/``) and a small JSON API; the work (:mod:`difflab.app.work`) composes the library's
samplers, guidance and tasks; :mod:`difflab.app.jobs` runs it in a bounded queue with progress, previews and Stop;
:mod:`difflab.app.params` checks every request against the limits and writes/reads the parameters in a PNG's text.
"""
