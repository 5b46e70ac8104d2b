"""Provider adapters: one module per platform, all satisfying `base.Provider`."""
