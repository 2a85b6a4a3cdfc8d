"""Bag labels: a label spec in, PNG/SVG/PDF/ZPL bytes out. Pure: imports nothing of ours."""
