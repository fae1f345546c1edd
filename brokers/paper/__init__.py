"""The built-in paper broker: a deterministic matching engine over the live feed."""
