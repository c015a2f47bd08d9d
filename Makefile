# Shortcuts for scripts/dev.py, which needs only Python and pip.
.PHONY: chat test check bench

chat:
	python scripts/dev.py chat

test:
	python scripts/dev.py test

check:
	python scripts/dev.py check

bench:
	python scripts/dev.py bench
