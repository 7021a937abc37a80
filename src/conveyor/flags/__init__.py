"""Feature flags per environment in OpenFeature's flagd format: definitions, evaluation, storage, delivery."""
