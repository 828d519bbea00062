"""`python -m edgecls.cli`."""

from . import main

main()
