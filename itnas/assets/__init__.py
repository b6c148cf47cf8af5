"""Data files shipped with the library: the NAS-Bench-201 results table (`nb201_results.csv.gz`, read by
`itnas.nb201`; contents, sources and licences in NB201_ATTRIBUTION.md). A package of its own, so that only the code
that imports it (the nb201 look-up) has the table as a dvc.yaml code dep (`itnas_tools.dvc_deps.package_data`)."""
