"""The one exception type users see for bad input."""


class DifflabError(ValueError):
    """Bad input: a wrong shape, an unknown name, a corrupt file, a nonsense option.

    The message is one sentence that names the input and what was expected. The CLI prints it
    and exits with status 2; the library raises it.
    """
