"""Builtin models: feeds, commission, slippage and the simulation broker."""
