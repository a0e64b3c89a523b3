"""PostgreSQL: the schema, connections, the embedded server and migrations."""
