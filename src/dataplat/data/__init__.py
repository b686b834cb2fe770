"""The deterministic synthetic bank: schema, generator, loaders."""
