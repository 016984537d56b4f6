"""AWS HealthOmics as a compute environment (type ``healthomics``): a managed service that
runs WDL, CWL and Nextflow workflows itself (docs/healthomics.md)."""
