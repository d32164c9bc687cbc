"""RankScope's user-facing layer: the ``rankscope`` CLI, the Streamlit workbench and reports.

Only this package imports streamlit (and only in ``main.py``, ``data.py`` and ``pages/``).
"""
