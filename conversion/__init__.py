"""Research and base checkpoints -> Hub folders."""
