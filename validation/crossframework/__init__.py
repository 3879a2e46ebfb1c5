"""Cross-framework tests: ml4t.backtest against Backtrader and VectorBT on shared features."""
