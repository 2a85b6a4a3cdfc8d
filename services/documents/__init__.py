"""Documents drawn from the record: the chain-of-custody report."""
