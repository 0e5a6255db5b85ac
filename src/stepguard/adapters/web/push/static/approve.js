// The approver page: holds this device's P-256 key (WebCrypto, not extractable, kept in
// IndexedDB), pairs with a one-time link (#pair=...), lists pending requests over
// server-sent events and answers them with a signature (docs/push.md).
"use strict";

const DB = "stepguard-approver";
const STORE = "keys";
const enc = new TextEncoder();

function b64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromB64url(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function dbGet(key) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const request = db.transaction(STORE, "readonly").objectStore(STORE).get(key);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function dbPut(key, value) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).put(value, key);
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}

async function sign(privateKey, payload) {
  // The server checks RFC 8785 canonical JSON: keys sorted, no spaces; every value here is
  // an ASCII string or a small integer, so JSON.stringify of sorted keys is exactly that.
  const sorted = {};
  for (const key of Object.keys(payload).sort()) sorted[key] = payload[key];
  const data = enc.encode(JSON.stringify(sorted));
  const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, privateKey, data);
  return b64url(signature);
}

function setState(text) {
  document.getElementById("approve-state").textContent = text;
}

async function pair(token) {
  const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
    "sign",
    "verify",
  ]);
  const jwk = await crypto.subtle.exportKey("jwk", keys.publicKey);
  const signature = await sign(keys.privateKey, { nonce: token, typ: "stepguard.push.pair.v1" });
  const response = await fetch("/approve/api/pair", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      pairing: token,
      public_key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y },
      signature,
    }),
  });
  if (!response.ok) throw new Error("pairing refused");
  const body = await response.json();
  await dbPut("device", { privateKey: keys.privateKey, factorId: body.factor_id });
  return body;
}

function button(text, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

function render(device, requests) {
  // Cards already shown stay as they are (a number being typed is kept); an answered card
  // keeps its result until a new request arrives; a card whose request closed elsewhere
  // (expired, replaced, answered on another device) goes.
  const list = document.getElementById("requests");
  const empty = document.getElementById("approve-empty");
  const open = new Set(requests.map((r) => r.push_id));
  const shown = new Set();
  for (const card of [...list.children]) {
    if (!open.has(card.dataset.push) && !card.dataset.outcome) card.remove();
    else shown.add(card.dataset.push);
  }
  const fresh = requests.filter((r) => !shown.has(r.push_id));
  if (fresh.length) {
    for (const card of [...list.children]) if (card.dataset.outcome) card.remove();
  }
  empty.hidden = requests.length > 0;
  setState(requests.length ? "Someone asked to approve:" : "This device is paired.");
  for (const request of fresh) {
    const card = document.createElement("section");
    card.className = "push-request";
    card.dataset.push = request.push_id;
    const summary = document.createElement("p");
    summary.className = "summary";
    summary.textContent = request.summary;
    const origin = document.createElement("p");
    origin.className = "meta push-origin";
    const parts = [request.origin_location, request.origin_browser].filter(Boolean);
    origin.textContent = parts.length ? "From " + parts.join(" · ") : "From an unknown place";
    const ask = document.createElement("p");
    ask.className = "hint";
    ask.textContent = "Pick the number shown on the screen that asked:";
    const result = document.createElement("p");
    result.className = "push-result";
    result.setAttribute("role", "status");
    const choices = document.createElement("div");
    choices.className = "push-choices";
    const answer = async (kind, number) => {
      // Marked at once: the stream may report the request closed before this answer's
      // response arrives, and the card must stay to show the result.
      card.dataset.outcome = "sent";
      for (const b of card.querySelectorAll("button, input")) b.disabled = true;
      try {
        const signature = await sign(device.privateKey, {
          answer: kind,
          challenge_id: request.challenge_id,
          digest: request.digest,
          number,
          push_id: request.push_id,
          typ: "stepguard.push.answer.v1",
        });
        const response = await fetch("/approve/api/answer", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({
            push_id: request.push_id,
            factor_id: device.factorId,
            number,
            answer: kind,
            signature,
          }),
        });
        const body = await response.json().catch(() => ({}));
        result.textContent =
          response.ok && body.status === "approved"
            ? "Approved."
            : response.ok && body.status === "denied"
              ? "Denied."
              : "That didn't work. The request is closed.";
        card.dataset.outcome = response.ok ? body.status : "failed";
      } catch {
        result.textContent = "That didn't work. Try again.";
      }
    };
    for (const n of request.choices) {
      choices.append(button(String(n), "button secondary", () => answer("approve", n)));
    }
    const typed = document.createElement("form");
    typed.className = "push-type";
    const label = document.createElement("label");
    label.textContent = "Or type it";
    const input = document.createElement("input");
    input.inputMode = "numeric";
    input.maxLength = 2;
    input.name = "number";
    input.id = "type-" + request.push_id;
    label.htmlFor = input.id;
    typed.append(label, input, button("Approve", "button primary", () => typed.requestSubmit()));
    typed.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = Number.parseInt(input.value, 10);
      if (Number.isInteger(value)) answer("approve", value);
    });
    const deny = button("Deny, it wasn't me", "button danger", () => answer("deny", 0));
    deny.classList.add("push-deny");
    card.append(summary, origin, ask, choices, typed, deny, result);
    list.append(card);
  }
}

async function enableNotifications(vapid) {
  const registration = await navigator.serviceWorker.ready;
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: fromB64url(vapid),
  });
  await fetch("/approve/api/subscription", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(subscription.toJSON()),
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  const main = document.getElementById("main");
  let vapid = main.dataset.vapid;
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/approve/sw.js", { scope: "/approve" }).catch(() => {});
  }
  const match = /^#pair=([A-Za-z0-9_.-]+)$/.exec(location.hash);
  if (match) {
    history.replaceState(null, "", location.pathname);
    setState("Pairing this device…");
    try {
      const body = await pair(match[1]);
      vapid = body.vapid_public_key || vapid;
    } catch {
      setState("This pairing link has expired or was already used. Start again from your account page.");
      return;
    }
  }
  const device = await dbGet("device");
  if (!device) {
    setState("This device is not paired. Open the pairing link from your account page.");
    return;
  }
  if (vapid && "PushManager" in window) {
    const enable = document.getElementById("notify-enable");
    enable.hidden = false;
    enable.addEventListener("click", () => enableNotifications(vapid).then(() => (enable.hidden = true)));
  }
  setState("This device is paired.");
  const events = new EventSource("/approve/api/events");
  events.addEventListener("requests", (event) => {
    const body = JSON.parse(event.data);
    render(device, body.requests);
  });
  events.addEventListener("revoked", () => {
    events.close();
    setState("This device was removed from your account.");
  });
});
