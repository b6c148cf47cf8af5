"""Maintainer tools of the repository: `dvc_deps` computes every DVC stage's code deps from its imports
(`python -m itnas_tools.dvc_deps --check | --write`); `pipeline.common.code_identity` uses it at run time."""
