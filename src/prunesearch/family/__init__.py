"""A family of trained, exported models from one trained base (``prunesearch family``)."""
