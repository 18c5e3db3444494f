"""Per-caller quotas: requests and tokens per minute, token and cost budgets per UTC day and month.

Limits (:mod:`.limits`) and windows (:mod:`.windows`) are pure; counters live in Table Storage
(:mod:`.counters`), and each instance leases slices of a counter's budget and spends them locally
(:mod:`.leases`), so the hot path needs no storage round trip while the admitted total stays within the
limit; :mod:`.enforcer` turns a model call into reservations and settles them. See docs/quotas.md.
"""
