"""The subcommands of `sdviz`, one module each, each with `register(subparsers)`."""
