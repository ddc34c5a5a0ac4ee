"""The domain: entities, the state machine, window arithmetic and message contracts. No Azure imports."""
