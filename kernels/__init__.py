"""Our own compute kernels: NumPy references and CuPy twins side by side (STYLE 8).

Per-customer segment reductions that dataframe groupby APIs do poorly live here as they land
with the feature stage.
"""
