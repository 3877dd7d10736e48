"""The executors of plan steps; each checks whether it is already satisfied before acting."""
