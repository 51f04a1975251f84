"""Independent, standard-library reference implementation of KPI_SPEC.md used as a test oracle."""
