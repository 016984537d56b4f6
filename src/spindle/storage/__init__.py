"""Run directories and the files inside them."""
