"""Run the command line client: ``python -m notify.client --help``."""

from __future__ import annotations

from notify.client.cli import main

raise SystemExit(main())
