"""A small custom CNN for prunesearch's "bring your own model" example."""
