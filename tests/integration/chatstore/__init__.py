"""Chat and journal storage on SQLite and PostgreSQL."""
