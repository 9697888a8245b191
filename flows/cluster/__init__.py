"""Many models on many workers: a team's set-up on one machine and the story told on it (`make cluster-demo`)."""
