"""``python -m kaito_inference`` runs the console script."""

from kaito_inference.cli import main

raise SystemExit(main())
