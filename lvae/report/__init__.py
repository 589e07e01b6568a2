"""Figures, widgets and the rendered docs: read results (and the experiments' readers), never train."""
