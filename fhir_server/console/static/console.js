// Progressive enhancement only: every page works without this file.
// The resource browser's type list filters as you type.
document.addEventListener("DOMContentLoaded", () => {
  const filter = document.getElementById("type-filter");
  const list = document.getElementById("types");
  if (filter && list) {
    filter.addEventListener("input", () => {
      const q = filter.value.trim().toLowerCase();
      for (const li of list.children) li.hidden = q !== "" && !li.textContent.toLowerCase().includes(q);
    });
  }
});
