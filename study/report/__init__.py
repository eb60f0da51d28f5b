"""The report side: the pandas view of the store, figures, tables, numbers and claims (no torch)."""
