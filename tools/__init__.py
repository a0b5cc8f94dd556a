"""Project tools: `make docs` runs cli_docs.py."""
