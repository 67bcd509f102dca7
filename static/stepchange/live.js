// Live updates: the console socket says what changed; the parts of the page that listen
// (hx-trigger="sc-executor from:body", "sc-requests from:body") fetch themselves again.
(function () {
  const status = () => document.getElementById("live-status");
  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/console/`);
    socket.onopen = () => { delay = 1000; status()?.classList.add("on"); };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      const family = String(event.kind || "").split(".")[0];
      document.body.dispatchEvent(new CustomEvent(`sc-${family}`, { detail: event }));
    };
    socket.onclose = () => {
      status()?.classList.remove("on");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  document.addEventListener("DOMContentLoaded", connect);
})();

// "Select all" boxes: one ticks every box of the form it names.
document.addEventListener("change", (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || !box.dataset.selectAll) return;
  for (const other of document.querySelectorAll(`input[form="${box.dataset.selectAll}"]`)) {
    other.checked = box.checked;
  }
});

// A part that opts in (data-swap-errors on the element asking) is replaced by the error the
// server answered with, which says what went wrong; htmx otherwise drops error answers.
document.addEventListener("htmx:beforeSwap", (event) => {
  const asking = event.detail.requestConfig && event.detail.requestConfig.elt;
  if (event.detail.xhr.status >= 400 && asking && asking.closest("[data-swap-errors]")) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

// Conditions on a part's own requests, here rather than in hx-trigger filters, which htmx
// evaluates as JavaScript strings (the Content-Security-Policy allows no eval):
// data-hold-while-checked: no refresh while the operator has ticked rows in it;
// data-fetch-when-open: a <details> fetches when opened, until it holds its answer (.raw-head).
document.addEventListener("htmx:beforeRequest", (event) => {
  const part = event.detail.elt;
  if (!(part instanceof HTMLElement)) return;
  const held = part.hasAttribute("data-hold-while-checked")
    && part.querySelector("input[name=ids]:checked");
  const closedOrDone = part.hasAttribute("data-fetch-when-open")
    && (!part.open || part.querySelector(".raw-head"));
  if (held || closedOrDone) event.preventDefault();
});
