// StepGuard hosted pages: passkeys and security keys (WebAuthn).
//
// The markup (templates/_webauthn_*.html) stays hidden unless this script runs in a browser
// with WebAuthn, so nothing dead is ever shown. Each ceremony fetches its options from the
// pages (a same-origin POST carrying the form's CSRF token), asks the browser for a
// credential, and posts the result as an ordinary form: the server then redirects or shows
// the page again with its one generic error, exactly as for the code forms. When the browser
// reports an error (cancelled, timed out, no matching key...), the form is posted without a
// credential and with the error's name, for the audit log.
"use strict";

(() => {
  const supported =
    typeof window.PublicKeyCredential === "function" &&
    typeof navigator.credentials?.get === "function";

  // --- base64url <-> ArrayBuffer, for browsers without the JSON helpers ------------------

  function decode(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer;
  }

  function encode(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map((c) => ({ ...c, id: decode(c.id) }));
  }

  function requestOptions(json) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: decode(json.challenge),
      allowCredentials: descriptors(json.allowCredentials),
    };
  }

  function creationOptions(json) {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: decode(json.challenge),
      user: { ...json.user, id: decode(json.user.id) },
      excludeCredentials: descriptors(json.excludeCredentials),
    };
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const r = credential.response;
    const response = { clientDataJSON: encode(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = encode(r.attestationObject);
      if (typeof r.getTransports === "function") response.transports = r.getTransports();
    } else {
      response.authenticatorData = encode(r.authenticatorData);
      response.signature = encode(r.signature);
      if (r.userHandle) response.userHandle = encode(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: encode(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment ?? null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response,
    };
  }

  // --- talking to the pages -------------------------------------------------------------

  class RefusedError extends Error {
    constructor(status) {
      super(`refused (${status})`);
      this.name = "OptionsRefused";
    }
  }

  async function fetchOptions(url, form) {
    const response = await fetch(url, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new RefusedError(response.status);
    return response.json();
  }

  function errorName(error) {
    return error && typeof error.name === "string" ? error.name : "Error";
  }

  function post(form, credential, clientError) {
    form.elements.credential.value = credential ? JSON.stringify(credential) : "";
    form.elements.client_error.value = clientError || "";
    form.submit(); // an ordinary navigation: the server redirects or renders the result
  }

  function busy(button, on) {
    if (!button) return;
    if (on) button.setAttribute("aria-busy", "true");
    else button.removeAttribute("aria-busy");
  }

  // --- the step-up prompt: navigator.credentials.get ------------------------------------

  function setUpAssertion(section) {
    const form = section.querySelector("form");
    const button = form.querySelector("button[type=submit]");
    let running = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (running) return;
      running = true;
      busy(button, true);
      try {
        const { options } = await fetchOptions(section.dataset.optionsUrl, form);
        const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
        post(form, credentialJSON(credential), "");
      } catch (error) {
        post(form, null, errorName(error));
      }
    });
    section.hidden = false;
    if (button.hasAttribute("data-autofocus")) button.focus();
  }

  // --- the account page: navigator.credentials.create -----------------------------------

  function setUpRegistration(section) {
    const confirm = document.getElementById("webauthn-confirm");
    const alert = document.getElementById("webauthn-error");
    let running = false;
    for (const form of section.querySelectorAll("form[data-kind]")) {
      const button = form.querySelector("button[type=submit]");
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        if (running) return;
        running = true;
        busy(button, true);
        alert.hidden = true;
        let factorId = null;
        try {
          const answer = await fetchOptions(section.dataset.optionsUrl, form);
          if (answer.redirect) {
            // A fresh step-up comes first; the page brings the user back here.
            window.location.assign(answer.redirect);
            return;
          }
          factorId = answer.factor_id;
          const credential = await navigator.credentials.create({
            publicKey: creationOptions(answer.options),
          });
          confirm.action = `/account/factors/${encodeURIComponent(factorId)}/webauthn`;
          post(confirm, credentialJSON(credential), "");
        } catch (error) {
          if (factorId) {
            // The server records why and discards the unfinished factor.
            confirm.action = `/account/factors/${encodeURIComponent(factorId)}/webauthn`;
            post(confirm, null, errorName(error));
            return;
          }
          running = false;
          busy(button, false);
          alert.hidden = false;
          button.focus();
        }
      });
    }
    section.hidden = false;
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!supported) return;
    for (const section of document.querySelectorAll("[data-webauthn=get]")) {
      setUpAssertion(section);
    }
    for (const section of document.querySelectorAll("[data-webauthn=create]")) {
      setUpRegistration(section);
    }
  });
})();
