"""refusalscope.data."""
