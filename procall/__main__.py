"""``python -m procall`` runs the command line."""

from procall.cli import main

raise SystemExit(main())
