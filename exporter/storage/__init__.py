"""Where finished files are kept (``base.Storage``), and where attempts write them first."""
