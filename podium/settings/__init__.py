"""Settings from the environment (``PODIUM_*``) and podium's config files, built at an entrypoint and passed down."""
