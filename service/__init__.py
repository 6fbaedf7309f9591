"""The HTTP layer: settings, schemas, routes and error handling. Calls ``verification`` only."""
