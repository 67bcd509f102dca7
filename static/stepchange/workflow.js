// A workflow's page: the Timeline / Steps tabs, the step side panel, child lanes that open
// in place, jumps to a step, and copying a value. Every control is also a plain link that
// works without this file (the server renders the same state from the URL).
(function () {
  const panel = () => document.getElementById("step-panel");
  let opener = null;

  function here(params) {
    const url = new URL(location.href);
    for (const [key, value] of Object.entries(params)) {
      if (value === null) url.searchParams.delete(key);
      else url.searchParams.set(key, value);
    }
    url.hash = "";
    return url;
  }

  // Tabs: the WAI-ARIA pattern (arrow keys move between them, the panel follows).
  function selectTab(tab, focus) {
    const list = tab.closest("[role=tablist]");
    for (const other of list.querySelectorAll("[role=tab]")) {
      const chosen = other === tab;
      other.setAttribute("aria-selected", String(chosen));
      other.tabIndex = chosen ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
    }
    const view = tab.id.replace("tab-", "");
    const field = document.querySelector(".step-filter input[name=view]");
    if (field) field.value = view;
    history.replaceState(null, "", here({ view, step: null }));
    if (focus) tab.focus();
  }

  document.addEventListener("click", (event) => {
    const tab = event.target.closest("[role=tab]");
    if (tab) {
      event.preventDefault();
      selectTab(tab, true);
    }
  });

  document.addEventListener("keydown", (event) => {
    const tab = event.target.closest && event.target.closest("[role=tab]");
    if (tab && ["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) {
      const tabs = [...tab.closest("[role=tablist]").querySelectorAll("[role=tab]")];
      let index = tabs.indexOf(tab);
      if (event.key === "ArrowRight") index = (index + 1) % tabs.length;
      if (event.key === "ArrowLeft") index = (index - 1 + tabs.length) % tabs.length;
      if (event.key === "Home") index = 0;
      if (event.key === "End") index = tabs.length - 1;
      event.preventDefault();
      selectTab(tabs[index], true);
    }
    if (event.key === "Escape" && panel() && !panel().hidden) closePanel();
  });

  // The side panel: a click on a step (its bar, its lane's name, its number in the table)
  // fetches that step's details; Escape or Close puts focus back where it was.
  function openPanel(functionId, from) {
    const box = panel();
    opener = from;
    box.hidden = false;
    box.innerHTML = '<p class="muted">Loading step ' + Number(functionId) + "…</p>";
    const url = here({ step: functionId, part: "panel", view: null, q: null });
    htmx.ajax("GET", url.pathname + url.search, { target: box, swap: "innerHTML", source: box })
      .then(() => {
        const title = document.getElementById("step-panel-title");
        box.focus();
        if (title) title.scrollIntoView({ block: "nearest" });
      });
    for (const chosen of document.querySelectorAll(".chosen")) chosen.classList.remove("chosen");
    for (const shown of document.querySelectorAll(`[data-step="${Number(functionId)}"]`)) {
      shown.classList.add("chosen");
    }
  }

  function closePanel() {
    const box = panel();
    box.hidden = true;
    box.innerHTML = "";
    for (const chosen of document.querySelectorAll(".chosen")) chosen.classList.remove("chosen");
    if (opener && document.contains(opener)) opener.focus();
    opener = null;
  }

  document.addEventListener("click", (event) => {
    const close = event.target.closest(".panel-close");
    if (close) {
      event.preventDefault();
      closePanel();
      return;
    }
    const step = event.target.closest("[data-step]");
    if (!step || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    if (step.hasAttribute("data-jump")) jump(step.dataset.step);
    // A bar has no focus of its own: focus returns to its lane's name.
    const focusable = step.closest("svg") ? step.closest(".tl-lane").querySelector(".tl-name") : step;
    openPanel(step.dataset.step, focusable);
  });

  // A jump shows the step's row in the table (a folded step is never one of these: the
  // failed and the last steps are always shown).
  function jump(functionId) {
    const tab = document.getElementById("tab-steps");
    if (tab) selectTab(tab, false);
    const row = document.getElementById("step-" + Number(functionId));
    if (row) {
      row.scrollIntoView({ block: "center" });
      row.classList.add("jumped");
      setTimeout(() => row.classList.remove("jumped"), 1600);
    }
  }

  // A child's lanes: fetched the first time, then shown and hidden in place.
  document.addEventListener("click", (event) => {
    const toggle = event.target.closest(".tl-toggle");
    if (!toggle) return;
    const box = document.getElementById(toggle.getAttribute("aria-controls"));
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    box.hidden = !open;
    if (open && !box.dataset.loaded) {
      box.dataset.loaded = "1";
      box.innerHTML = '<p class="small muted">Loading the child\u2019s steps…</p>';
      htmx.ajax("GET", toggle.dataset.laneUrl, { target: box, swap: "innerHTML", source: box })
        .catch(() => { delete box.dataset.loaded; });
    }
  });

  // The filter keeps its place in the URL, so that a filtered view is a link too.
  document.addEventListener("htmx:afterRequest", (event) => {
    const form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("step-filter")) return;
    const q = form.querySelector("input[name=q]").value.trim();
    history.replaceState(null, "", here({ q: q || null }));
  });

  // Copy a value's pretty-printed text.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const text = button.parentElement.querySelector("pre.json").textContent;
    const said = button.parentElement.querySelector(".copied");
    navigator.clipboard.writeText(text).then(
      () => { if (said) said.textContent = "Copied."; },
      () => { if (said) said.textContent = "Could not copy: select the text instead."; },
    );
  });

  // The page opened on a step (?step=, or a jump link followed without this file).
  document.addEventListener("DOMContentLoaded", () => {
    const box = panel();
    if (box && !box.hidden) box.focus();
  });
})();
