"""``python -m stream_widgets.cli``: the `stream-widgets` command."""

from stream_widgets.cli import main

raise SystemExit(main())
