"""python -m client: the i2v command."""

from client.cli import main

main()
