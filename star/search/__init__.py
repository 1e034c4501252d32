"""NSGA-II over genomes, through pymoo's ask/tell (pymoo never runs an evaluation)."""
