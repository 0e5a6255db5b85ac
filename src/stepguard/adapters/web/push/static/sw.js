// The approver page's service worker: shows a notification for a Web Push and opens the
// page when it is tapped. The page itself fetches the request's details (nothing secret is
// in the push payload beyond the action summary).
"use strict";

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = {};
  }
  const title = "Approve a request?";
  const body = data.summary ? data.summary + " — open to pick the number" : "Open to review it";
  event.waitUntil(
    self.registration.showNotification(title, {
      body,
      tag: data.push_id || "stepguard-push",
      requireInteraction: true,
      data: { url: "/approve" },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      for (const w of windows) {
        if (new URL(w.url).pathname === "/approve") return w.focus();
      }
      return self.clients.openWindow("/approve");
    }),
  );
});
