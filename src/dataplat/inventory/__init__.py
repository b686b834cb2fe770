"""The inventory: model, schema, host facts, placement."""
