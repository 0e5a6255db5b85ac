// StepGuard hosted pages: small progressive enhancements. Every page works without this file.
// Feature modules (e.g. webauthn.js, when passkeys ship) are separate files loaded the same way.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Submit once: a second click while the first request is in flight would burn a code.
  for (const form of document.querySelectorAll("form[data-once]")) {
    form.addEventListener("submit", (event) => {
      if (form.dataset.submitted === "true") {
        event.preventDefault();
        return;
      }
      form.dataset.submitted = "true";
      const button = form.querySelector("button[type=submit]");
      if (button) button.setAttribute("aria-busy", "true");
    });
  }

  // One-time codes: drop the spaces some apps show between digit groups.
  for (const input of document.querySelectorAll("input[autocomplete=one-time-code]")) {
    input.addEventListener("input", () => {
      const cleaned = input.value.replace(/\s+/g, "");
      if (cleaned !== input.value) input.value = cleaned;
    });
  }

  // "Copy" buttons are hidden until this script can make them work.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const target = document.getElementById(button.dataset.copy);
    if (!target || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(target.textContent.replace(/\s+/g, ""));
        button.textContent = "Copied";
      } catch {
        button.textContent = "Copy failed";
      }
    });
  }
});
