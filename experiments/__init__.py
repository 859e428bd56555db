"""Experiment scripts: the Table 1 / Fig. 4 grid (`table1`) and its report (`render`)."""
