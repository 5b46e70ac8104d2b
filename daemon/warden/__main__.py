"""`python -m warden`: the same command as `warden`."""

from warden.cli import main

raise SystemExit(main())
