"""StepGuard: self-hosted step-up authentication.

The server lives in :mod:`stepguard.bootstrap` (composition root) and :mod:`stepguard.cli`;
applications talk to it through :mod:`stepguard.sdk`. Importing this package does nothing.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
