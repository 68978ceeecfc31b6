"""`prunecli report`: a folder of runs → one results table and Pareto plots, over seeds.

collect.py finds checkpoints and reads their headers and sidecars (never the weights),
aggregate.py groups runs that differ only by seed into rows (mean ± std, n), pareto.py finds
the front and draws the plots (matplotlib, imported only there), render.py writes the table
as rich / markdown / HTML / JSON, paper.py reads a paper's numbers (paper.json).
"""
