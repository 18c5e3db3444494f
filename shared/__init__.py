"""The gateway: everything the function app in ``function_app.py`` runs.

Read the request path in :mod:`shared.pipeline`:
authenticate -> guard -> reserve -> forward -> account -> respond.
"""
