"""``python -m certflow``: the same command line as the ``certflow`` script."""

from certflow.cli import main

if __name__ == "__main__":
    main(prog_name="certflow")
