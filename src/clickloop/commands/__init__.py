"""The `clickloop` command groups that have a module of their own; `clickloop.cli` builds the
parser, registers them and runs them. Each module's `register(commands, command)` adds its group."""
