"""Celery workers and the single beat. The database holds all durable work; messages carry ids."""
