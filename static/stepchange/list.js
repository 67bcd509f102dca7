// The workflow list: a clean URL for each filter change, families that open in place, the
// count of ticked rows in the bulk bar, and columns shown or hidden as they are chosen.
(function () {
  // The filter form sends only what is set: empty fields would fill the pushed URL.
  document.addEventListener("htmx:configRequest", (event) => {
    const form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-list-filters")) return;
    // A name may repeat (one box per attribute): keep each value that is set, in order.
    const data = event.detail.formData;
    const entries = [...data.entries()];
    for (const name of new Set(entries.map(([name]) => name))) data.delete(name);
    for (const [name, value] of entries) {
      if (value !== "") data.append(name, value);
    }
  });

  // A family's toggle: its first click fetches the children (hx-trigger="click once");
  // later clicks hide or show the rows it brought, and their own opened families.
  function childRows(table, parentId) {
    return [...table.querySelectorAll("tr[data-child-of]")].filter(
      (row) => row.dataset.childOf === parentId
    );
  }
  function showFamily(table, parentId, shown) {
    for (const row of childRows(table, parentId)) {
      row.hidden = !shown;
      const toggle = row.querySelector("[data-family-toggle]");
      if (toggle && toggle.dataset.loaded) {
        showFamily(table, toggle.dataset.workflowId, shown && toggle.getAttribute("aria-expanded") === "true");
      }
    }
  }
  document.addEventListener("click", (event) => {
    const toggle = event.target instanceof Element && event.target.closest("[data-family-toggle]");
    if (!toggle) return;
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = open ? "▾" : "▸";
    const label = toggle.getAttribute("aria-label") || "";
    toggle.setAttribute("aria-label", label.replace(/^(Show|Hide)/, open ? "Hide" : "Show"));
    if (toggle.dataset.loaded) {
      showFamily(toggle.closest("table"), toggle.dataset.workflowId, open);
    }
    toggle.dataset.loaded = "1";
  });

  // The live refresh of the rows waits while a family is open (it would close it).
  document.addEventListener("htmx:beforeRequest", (event) => {
    const part = event.detail.elt;
    if (part instanceof HTMLElement && part.id === "workflow-rows"
        && part.querySelector("[data-family-toggle][aria-expanded=true]")) {
      event.preventDefault();
    }
  });

  // The bulk bar shows once a row is ticked (console.css); it says how many are.
  document.addEventListener("change", (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || !(box.name === "ids" || box.dataset.selectAll)) return;
    const count = document.querySelectorAll("input[name=ids][form=bulk]:checked").length;
    const shown = document.querySelector("[data-selected-count]");
    if (shown) shown.textContent = count ? `${count} selected` : "";
  });

  // Chosen columns show at once; htmx saves the choice (hx-post on the picker's form).
  document.addEventListener("change", (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.closest("[data-column-picker]")) return;
    document.querySelector("[data-workflow-table]")?.classList.toggle(`hide-${box.value}`, !box.checked);
  });
})();
