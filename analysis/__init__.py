"""RankScope analysis: pure functions over ``LayerDelta`` and tensors (no streamlit, no file formats)."""
