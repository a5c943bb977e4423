"""One module a `python -m gateway` command: the top floor, which may use every
wing below it."""
