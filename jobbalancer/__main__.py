"""``python -m jobbalancer`` is ``jb``."""

from jobbalancer.cli import main

main(prog_name="jb")
