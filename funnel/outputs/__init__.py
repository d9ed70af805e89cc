"""What reads a finished build: queries, status, PostgreSQL and file exports, parity, HTML pages."""
