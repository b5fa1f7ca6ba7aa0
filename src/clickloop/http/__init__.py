"""HTTP entry points: the click and postback hot path, the admin API and UI."""
