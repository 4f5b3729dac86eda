"""The ``segscale`` command line: thin typer commands over ``engine``."""
