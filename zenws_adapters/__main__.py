"""``python -m zenws_adapters``: the ``zenws`` command line."""

from .cli import main

main()
