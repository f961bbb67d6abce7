"""Pure logic: harmonisation of raw PEDE rows, targets, feature sets and the leakage policy."""
