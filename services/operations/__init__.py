"""Use cases. Each locks what it changes, asks the domain, writes rows and flushes.

Operations never commit: the caller (a view, a task, a CLI command) owns the transaction.
"""
