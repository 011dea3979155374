"""refusalscope.scoring."""
