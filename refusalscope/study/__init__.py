"""Studies: a TOML spec expanded into a resumable graph of runs (`spec`, `graph`, `executor`,
`ray_exec`), its cost (`plan`) and report (`report`); scaling fits over the runs' metrics
(`points`, `fit`, `figures`, `tables`)."""
