"""Push approval's HTTP surface: the API's push endpoints, the requesting page's push and
email/SMS buttons, and the approver page ``/approve`` (a PWA). See docs/push.md."""

from stepguard.adapters.web.push._router import push_router

__all__ = ["push_router"]
