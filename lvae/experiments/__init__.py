"""The paper's experiments, the notebooks' cached runs, the claims table and its statistics: built on the core, never imported by it."""
