"""``python -m miniagents``: the ``miniagents`` command (see `miniagents.cli`)."""

from miniagents.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
