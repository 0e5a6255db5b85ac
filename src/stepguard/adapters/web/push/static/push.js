// The requesting page of a push approval: poll the push's status; once approved, post the
// finish form (which rotates the browser session and returns to the app). Without this
// file the "I've approved it" button does the same by hand.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("push-finish");
  const status = document.getElementById("push-status");
  if (!form || !status) return;
  const url = form.dataset.state;
  let done = false;
  const messages = {
    denied: "The request was denied on your device.",
    wrong_number: "A different number was picked on your device.",
    expired: "The request expired.",
    superseded: "A newer request replaced this one.",
  };
  async function poll() {
    if (done) return;
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const body = await response.json();
        if (body.status === "approved") {
          done = true;
          status.textContent = "Approved. Continuing…";
          form.submit();
          return;
        }
        if (messages[body.status]) {
          done = true;
          status.textContent = messages[body.status];
          status.dataset.outcome = body.status;
          form.submit(); // the server shows what happened and how to try again
          return;
        }
      }
    } catch {
      // a network blip: try again on the next tick
    }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 500);
});
