"""Where finished files live."""
