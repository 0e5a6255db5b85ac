"""Sign-in on StepGuard itself: ``/login`` (password or passkey), ``/logout``, and the
password API. See docs/login.md."""

from stepguard.adapters.web.login._router import (
    PasswordIn,
    login_cookie_name,
    login_router,
    password_api_router,
)

__all__ = ["PasswordIn", "login_cookie_name", "login_router", "password_api_router"]
