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
