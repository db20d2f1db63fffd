"""What every layer shares: settings, domain errors, logging context, the resources of a running app."""
