"""Command-line entry points: thin ``main`` functions over the library (nothing in the package imports them)."""
