"""Export types. Each module registers one with ``@export_handler``; all are imported at start."""
