"""Use cases. Each function owns one transaction; none takes a request object."""
