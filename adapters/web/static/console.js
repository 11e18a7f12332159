// The console's only script: keep a channel's cards live. The server sends `change` on
// /console/events when the channel's cards change (a claim on Slack, a click here); the
// cards are then fetched again and put in place, unless a form in them is being filled in.
"use strict";
(function () {
  const cards = document.getElementById("cards");
  if (!cards || !window.EventSource) return;
  const channel = cards.dataset.channel;
  const back = cards.dataset.back;
  let version = cards.dataset.version;
  let pending = false;

  function busy() {
    const active = document.activeElement;
    return cards.contains(active) && active.matches("input, textarea, select") || cards.querySelector("details[open]");
  }

  async function refresh() {
    if (busy()) { pending = true; return; }
    pending = false;
    const query = new URLSearchParams({ channel: channel, back: back });
    const response = await fetch("/console/cards?" + query.toString(), { credentials: "same-origin" });
    if (!response.ok) return;
    const focused = where(document.activeElement);
    cards.innerHTML = await response.text();  // rendered and escaped by the server
    version = response.headers.get("X-Version") || version;
    if (focused) refocus(focused);
  }

  // A keyboard user's place survives a refresh: the same button or link of the same card, if still there.
  function where(active) {
    const card = active && cards.contains(active) ? active.closest("article") : null;
    return card ? { card: card.id, tag: active.tagName, text: active.textContent.trim() } : null;
  }

  function refocus(focused) {
    const card = document.getElementById(focused.card);
    const same = card && Array.from(card.querySelectorAll(focused.tag)).find(function (el) {
      return el.textContent.trim() === focused.text;
    });
    if (same) same.focus();
  }

  const events = new EventSource("/console/events?" + new URLSearchParams({ channel: channel, version: version }).toString());
  events.addEventListener("change", function (event) {
    if (event.data !== version) refresh();
  });
  document.addEventListener("focusout", function () {
    if (pending) setTimeout(function () { if (pending) refresh(); }, 200);
  });
})();
