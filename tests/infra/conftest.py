"""Structural tests over the Bicep templates. They need pycep-parser (and PyYAML), which live in .venv-infra
(scripts/check-infra.sh); in the app venv the test modules skip themselves via pytest.importorskip."""
