"""Results: analysis of run directories, evaluation, report and figures."""
