"""Model card templates and their renderer."""
