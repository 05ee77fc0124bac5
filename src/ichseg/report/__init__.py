"""What ichseg shows people: PNG previews, per-case outputs and the HTML report."""
