"""The one exception type users see: a message that names the problem and the fix."""


class PyiosoError(ValueError):
    """Bad input (bit width, shape, grouping, table, artifact, network name...).

    Raised with a message that says what is wrong and how to fix it; the CLI prints it
    without a traceback.
    """
