"""fnnbench.report: MLflow runs -> pandas -> seaborn -> markdown (``python -m fnnbench.report``).

Modules: ``data`` (reading the store, ``cast_params``, bulk histories), ``tables`` (the numbers
behind each figure), ``plots`` (seaborn figures), ``markdown`` (pages, ``md_escape``),
``build`` (``build_report``: the whole report). The report never trains.
"""
