"""Events: the catalogue of what Warden tells, the outbox and delivery to sinks."""
