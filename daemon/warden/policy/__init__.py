"""The policy language: models, loading with precise errors, schedules, and decide()."""
