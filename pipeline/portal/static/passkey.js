// Passkeys in the portal: register from an invitation, sign in, and sign review decisions.
// The server chooses every challenge; for a decision it is sha256(approval payload) || nonce.
"use strict";

function show(id, text) {
  const el = document.getElementById(id);
  if (el) { el.textContent = text; el.hidden = !text; }
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({error: "The portal answered " + response.status + "."}));
  if (!response.ok) throw new Error(data.error || ("The portal answered " + response.status + "."));
  return data;
}

async function register(card) {
  const csrf = card.dataset.csrf, token = card.dataset.token;
  const options = await post("/passkey/register/options", {csrf, token});
  const credential = await navigator.credentials.create(
    {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options)});
  const done = await post("/passkey/register", {csrf, token, credential: credential.toJSON()});
  window.location.assign(done.next);
}

async function signIn(card) {
  const csrf = card.dataset.csrf;
  const options = await post("/passkey/sign-in/options", {csrf});
  const credential = await navigator.credentials.get(
    {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
  const done = await post("/passkey/sign-in", {csrf, credential: credential.toJSON()});
  window.location.assign(done.next);
}

// Played to the end, with every part of the draft heard: only then may its audio be approved.
let listened = false;

function heardAll(audio) {
  let heard = 0;
  for (let i = 0; i < audio.played.length; i++) heard += audio.played.end(i) - audio.played.start(i);
  return audio.duration > 0 && heard >= audio.duration - 0.25;
}

async function decide(card, decision) {
  const url = "/review/" + card.dataset.statement;
  const csrf = card.dataset.csrf;
  const heard = card.dataset.audio === "yes" && listened;
  const comment = (document.getElementById("comment") || {}).value || "";
  const ask = await post(url + "/challenge", {csrf, decision, listened: heard});
  const credential = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(
    {challenge: ask.challenge, rpId: ask.rpId, allowCredentials: ask.allowCredentials,
     userVerification: ask.userVerification, timeout: ask.timeout})});
  const done = await post(url + "/decide", {csrf, decision, listened: heard, comment, credential: credential.toJSON()});
  show("result", "Signed: " + decision.replace("_", " ") + ". The statement is now " + done.state + ".");
  show("state", done.state);
  for (const button of document.querySelectorAll("button.decide")) button.disabled = true;
}

function guard(action) {
  return () => { show("error", ""); action().catch((err) => show("error", err.message || String(err))); };
}

document.addEventListener("DOMContentLoaded", () => {
  const reg = document.getElementById("register");
  if (reg) document.getElementById("register-passkey").addEventListener("click", guard(() => register(reg)));
  const login = document.getElementById("sign-in");
  if (login) document.getElementById("sign-in-passkey").addEventListener("click", guard(() => signIn(login)));
  const card = document.getElementById("review");
  if (!card) return;
  const draft = document.getElementById("draft");
  if (draft) {
    draft.addEventListener("ended", () => {
      if (!heardAll(draft)) {
        show("listen-note", "Parts of the draft were skipped; play it from the start to the end to approve it.");
        return;
      }
      listened = true;
      const approve = document.getElementById("approve");
      if (approve) approve.disabled = false;
      show("listen-note", "You heard the whole draft.");
    });
  }
  for (const button of document.querySelectorAll("button.decide")) {
    button.addEventListener("click", guard(() => decide(card, button.dataset.decision)));
  }
});
