"""Acme Bank: a small demo application protected by StepGuard through the public SDK only.

It shows what an integration looks like from the application's side: a password login that
registers the StepGuard session (``amr: ["pwd"]``, IP, user agent, device id), routes guarded
with :class:`stepguard.sdk.starlette.StepUpGuard`, and transactions that are first stored as
*pending* and executed by a guarded ``GET`` so that the browser's return from the hosted
step-up page (``?stepguard_challenge=...``) redeems the grant for exactly that transaction.

``stepguard demo`` starts it next to StepGuard (:mod:`stepguard.demo.bank.runner`); on its own:
``python -m stepguard.demo.bank`` with the ``ACME_BANK_*`` settings (:mod:`.settings`).
Everything is kept in memory: a restart forgets balances and transfers.
"""
