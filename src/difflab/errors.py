"""The one exception type users see for bad input."""

from __future__ import annotations

import re

_PARAMETER = re.compile(r"⟨([^⟩]+)⟩")


class DifflabError(ValueError):
    """Bad input: a wrong shape, an unknown name, a corrupt file, a nonsense option.

    The message is one sentence that names the input and what was expected. The CLI prints it
    and exits with status 2; the library raises it.

    A message names a parameter of the library as ``⟨name⟩`` (a config key such as ``⟨train.steps⟩``, or a keyword
    such as ``⟨device⟩``): the error reads with the parameter's name, and :meth:`render` lets the CLI put the flag
    that sets it in its place.
    """

    def __init__(self, message: str):
        self.template = message
        super().__init__(_PARAMETER.sub(r"\1", message))

    @property
    def parameters(self) -> list[str]:
        """The parameters the message names."""
        return _PARAMETER.findall(self.template)

    def render(self, name_of) -> str:
        """The message with each parameter written as ``name_of(parameter)`` (a flag, say)."""
        return _PARAMETER.sub(lambda m: name_of(m.group(1)), self.template)


class PeerLost(DifflabError):
    """A process of a torchrun run lost its peers (one of them died or was killed): every surviving process
    says so, not only rank 0, since the one that died may be rank 0."""
