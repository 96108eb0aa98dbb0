"""What the tests import: pipelines, handlers, helpers (conftests only define fixtures)."""
