"""``python -m llmos.cli``: the ``llmos`` command."""

from __future__ import annotations

from ._main import main

raise SystemExit(main())
