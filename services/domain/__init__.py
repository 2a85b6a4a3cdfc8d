"""The pure domain: identifiers, the custody state machine, the rules of who may do what where.

Nothing here imports Flask, SQLAlchemy, Celery or does I/O; operations hand it plain values.
"""
