"""The project as written: environments.toml, sql/ (models, tests, macros, sources), compiled into one Manifest."""
