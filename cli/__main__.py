"""``python -m cli``: the ``passos`` command line."""

from cli.app import app

app(prog_name="passos")
