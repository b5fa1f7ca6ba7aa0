"""Storage: SQLAlchemy Core tables, engine, repositories, outbox and Alembic migrations."""
