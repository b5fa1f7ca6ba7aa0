"""Pure rules: ids, click params, postbacks, statuses, macros, money. Stdlib only."""
