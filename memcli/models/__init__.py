"""Model files: the catalog of recommended GGUFs, hub downloads, conversion."""
