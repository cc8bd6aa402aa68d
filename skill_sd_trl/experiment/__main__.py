"""``python -m skill_sd_trl.experiment``: the experiment command, and ``run-cell`` (one cell, in its own process)."""

from . import main

raise SystemExit(main())
