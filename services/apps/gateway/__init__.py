"""The public HTTP API and the shopper's page."""
