"""Adapters: the ports of :mod:`stepguard.service.ports` implemented with real I/O.

Each adapter is its own module or package (``storage``, ``crypto``, ``system``, ``web``) and is
imported explicitly by the composition root. Importing this package imports nothing else.
"""
