"""The apps layer, the top: the command line (cli.py, one module per command, the shared flag
groups in flags.py) and, next, a server and a Ray runner. Nothing below imports it."""
