"""`make bench`: reconcile timed side by side with the raw tools on a self-made sandbox."""
