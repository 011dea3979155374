"""refusalscope.models."""
