"""The aggregator: consume result events, keep the selection state, publish each study's best model."""
