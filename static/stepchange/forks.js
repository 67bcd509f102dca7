// The edited-fork editor: each JSON value is checked as it is typed and compared, line by
// line, with the stored value it started from.
(function () {
  function pretty(text) {
    return JSON.stringify(JSON.parse(text), null, 2);
  }

  // A line diff (longest common subsequence): [kind, line] with kind " ", "-" or "+".
  function diffLines(before, after) {
    const a = before.split("\n"), b = after.split("\n");
    const table = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
    for (let i = a.length - 1; i >= 0; i--) {
      for (let j = b.length - 1; j >= 0; j--) {
        table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
      }
    }
    const out = [];
    let i = 0, j = 0;
    while (i < a.length && j < b.length) {
      if (a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
      else if (table[i + 1][j] >= table[i][j + 1]) { out.push(["-", a[i]]); i++; }
      else { out.push(["+", b[j]]); j++; }
    }
    while (i < a.length) out.push(["-", a[i++]]);
    while (j < b.length) out.push(["+", b[j++]]);
    return out;
  }

  function check(editor) {
    const area = editor.querySelector("textarea");
    const status = editor.querySelector(".json-status");
    const diff = editor.querySelector(".diff");
    if (area.disabled) {
      status.textContent = "";
      diff.hidden = true;
      return;
    }
    let now;
    try {
      now = pretty(area.value);
    } catch (error) {
      editor.classList.add("invalid");
      status.textContent = "Not valid JSON: " + error.message;
      diff.hidden = true;
      return;
    }
    editor.classList.remove("invalid");
    const original = area.dataset.original;
    if (!original) {
      status.textContent = "Valid JSON: replaces the stored value.";
      diff.hidden = true;
      return;
    }
    const lines = diffLines(pretty(original), now);
    const changed = lines.some(([kind]) => kind !== " ");
    status.textContent = changed ? "Valid JSON, edited:" : "Valid JSON, unchanged.";
    diff.hidden = !changed;
    diff.replaceChildren(...lines.map(([kind, line]) => {
      const row = document.createElement("span");
      row.className = kind === "+" ? "added" : kind === "-" ? "removed" : "same";
      row.textContent = `${kind} ${line}\n`;
      return row;
    }));
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const editor of document.querySelectorAll("[data-editor]")) {
      const area = editor.querySelector("textarea");
      const replace = editor.querySelector("[data-replace]");
      area.addEventListener("input", () => check(editor));
      replace?.addEventListener("change", () => {
        area.disabled = !replace.checked;
        check(editor);
      });
      check(editor);
    }
  });
})();
