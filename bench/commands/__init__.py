"""One module per subcommand; see bench.cli."""
