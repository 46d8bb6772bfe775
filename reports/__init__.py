"""Comparison reports over a results tree (aggregation, figures, Markdown/HTML)."""
