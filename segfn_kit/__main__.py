"""``python -m segfn_kit`` is the ``segfn`` command."""

from segfn_kit._cli import main

raise SystemExit(main())
