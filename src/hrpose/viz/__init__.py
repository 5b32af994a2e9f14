"""Visualisation: skeleton drawing, heatmap grids, tag plots (pure) and video I/O."""
