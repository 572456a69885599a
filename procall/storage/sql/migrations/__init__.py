"""The one Alembic environment of procall's SQL databases.

Every area (directory, chat, journal, config, ...) adds its tables to the same,
strictly linear history, so one ``upgrade_to_head`` brings any procall database up
to date. Revision files are named ``NNNN_<area>_<summary>.py`` with the revision id
``NNNN_<area>`` (``0001_directory``), ``down_revision`` naming the previous file's id.
Write migrations by hand with explicit columns (never import the live tables), and
keep ``procall.storage.sql.tables`` in step: a test compares the migrated schema with
the ``MetaData`` on SQLite and PostgreSQL and compiles the migration for SQL Server.
"""
