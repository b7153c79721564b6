"""The pure core: identity, configuration models, records, aggregation and selection. No I/O here."""
