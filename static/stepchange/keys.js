// Keyboard shortcuts: "/" to the page's search box (else the go-to box), "g" to the
// "go to workflow" box, "?" for the list of shortcuts. None fires while typing.
(function () {
  "use strict";
  const TYPING = "input, textarea, select, [contenteditable]:not([contenteditable='false'])";

  function typing(target) {
    return target instanceof Element && target.closest(TYPING) !== null;
  }

  function focus(box) {
    if (!box) return false;
    box.focus();
    box.select();
    return true;
  }

  function showShortcuts() {
    const dialog = document.getElementById("shortcuts");
    if (!dialog || dialog.open) return false;
    dialog.showModal();
    return true;
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.isComposing || typing(event.target) || document.querySelector("dialog[open]")) return;
    let done = false;
    if (event.key === "/") {
      done = focus(document.querySelector("[data-search-box]") || document.querySelector("[data-goto-box]"));
    } else if (event.key === "g") {
      done = focus(document.querySelector("[data-goto-box]"));
    } else if (event.key === "?") {
      done = showShortcuts();
    }
    // Only a key that did something is kept from the browser (its "/" quick find).
    if (done) event.preventDefault();
  });

  // A box that scrolls (a long value, a request body) takes the focus, so that it can be
  // scrolled from the keyboard; one that fits stays out of the tab order.
  function focusableScrollers(root) {
    if (!(root instanceof Element || root instanceof Document)) return;
    for (const box of root.querySelectorAll("pre")) {
      const scrolls = box.scrollHeight > box.clientHeight || box.scrollWidth > box.clientWidth;
      if (scrolls && !box.hasAttribute("tabindex")) box.tabIndex = 0;
    }
  }
  document.addEventListener("DOMContentLoaded", () => focusableScrollers(document));
  document.addEventListener("htmx:afterSettle", (event) => focusableScrollers(event.target));
  // A value inside a closed <details> only takes its size when opened.
  document.addEventListener("toggle", (event) => focusableScrollers(event.target), true);

  document.addEventListener("click", (event) => {
    if (event.target instanceof Element && event.target.closest("[data-shortcuts-open]")) {
      showShortcuts();
    }
  });
})();
