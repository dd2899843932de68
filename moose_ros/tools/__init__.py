"""Command-line tools behind ``moose <command>``: one module per subcommand (see :mod:`moose_ros.cli`)."""
