"""Where finished files are kept (``base.Storage``), and where exports are written first."""
