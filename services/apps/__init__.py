"""Apps: the gateway, the embedding service, the CLI and the composition root that wires a process.

They may import everything below them (workers and library); nothing below imports them."""
